"""Alarms the stack creates for policies that ask for a preset instead of naming an alarm."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from remediators.core.policy import Policy


class PresetAlarms(Construct):
    """One alarm per preset policy, named as its selector expects."""

    def __init__(self, scope: Construct, construct_id: str, *, policies: list[Policy]) -> None:
        super().__init__(scope, construct_id)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for policy in policies:
            preset = policy.alarm.preset
            if preset is None or policy.alarm.name is None or policy.target is None:
                continue
            threshold, period, periods = preset.settings()
            metric = _metric(
                preset.kind,
                policy.target.model_dump(),
                Duration.seconds(int(period.total_seconds())),
            )
            self.alarms[policy.name] = cloudwatch.Alarm(
                self,
                policy.name,
                alarm_name=policy.alarm.name,
                alarm_description=f"autoremediate preset {preset.kind} for policy {policy.name}",
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )


def _metric(kind: str, target: dict[str, str], period: Duration) -> cloudwatch.IMetric:
    if kind == "dynamodb-throttling":
        table = {"TableName": target["table"]}
        return cloudwatch.MathExpression(
            expression="reads + writes",
            label="throttle events",
            period=period,
            using_metrics={
                "reads": _aws("DynamoDB", "ReadThrottleEvents", table, "Sum", period),
                "writes": _aws("DynamoDB", "WriteThrottleEvents", table, "Sum", period),
            },
        )
    if kind == "api-5xx":
        return _aws("ApiGateway", "5XXError", {"ApiName": target["api"]}, "Sum", period)
    function = {"FunctionName": target["function"]}
    if kind == "lambda-timeouts":
        return _aws("Lambda", "Duration", function, "Maximum", period)
    # error-rate, in percent of invocations
    return cloudwatch.MathExpression(
        expression="100 * errors / invocations",
        label="error rate (%)",
        period=period,
        using_metrics={
            "errors": _aws("Lambda", "Errors", function, "Sum", period),
            "invocations": _aws("Lambda", "Invocations", function, "Sum", period),
        },
    )


def _aws(
    service: str, name: str, dimensions: dict[str, str], statistic: str, period: Duration
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=f"AWS/{service}",
        metric_name=name,
        dimensions_map=dimensions,
        statistic=statistic,
        period=period,
    )
