"""Who watches the watcher: a dashboard, and alarms on autoremediate's own failures.

The alarms' names start with SELF_ALARM_PREFIX, which no policy may select, so autoremediate
never tries to remediate itself; they notify the operators instead.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from remediators.core.policy import SELF_ALARM_PREFIX
from stacks import names

OUTCOME_METRICS = ("Applied", "Skipped", "Failed", "Invalid", "Escalations")


class Operations(Construct):
    """Dashboard of outcomes, recovery time, DLQ depth, errors; alarms on errors and DLQs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.Function,
        dead_letter_queues: list[sqs.Queue],
        topics: list[sns.ITopic],
        other_functions: dict[str, lambda_.Function] | None = None,
    ) -> None:
        """`function`: the remediator (on the dashboard too); `other_functions`: the other
        entry points by kind, each with an errors alarm of its own (a failing sweep leaves IP
        blocks in place; a failing verification escalates nothing)."""
        super().__init__(scope, construct_id)
        stack_name = Stack.of(self).stack_name
        errors = function.metric_errors(period=Duration.minutes(5), statistic="Sum")
        dead_letters = [
            queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            )
            for queue in dead_letter_queues
        ]
        self.alarms = [
            self._alarm(
                f"{stack_name}-remediator-errors", errors, "the remediator function failed"
            ),
            *[
                self._alarm(
                    f"{stack_name}-{kind.replace('_', '-')}-errors",
                    other.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                    f"the {kind.replace('_', '-')} function failed",
                )
                for kind, other in sorted((other_functions or {}).items())
            ],
            *[
                self._alarm(
                    f"{stack_name}-dead-letters-{index}",
                    metric,
                    "events are waiting in a dead-letter queue: replay or discard them",
                )
                for index, metric in enumerate(dead_letters)
            ],
        ]
        for alarm in self.alarms:
            for topic in topics:
                alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{stack_name}-autoremediate"
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Events by outcome",
                left=[_metric(name) for name in OUTCOME_METRICS],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Time to recovery (s)",
                left=[_metric("TimeToRecovery", statistic="Average")],
                width=12,
            ),
            cloudwatch.GraphWidget(title="Dead-letter queue depth", left=dead_letters, width=8),
            cloudwatch.GraphWidget(title="Remediator errors", left=[errors], width=8),
            cloudwatch.GraphWidget(
                title="Remediator duration (ms)",
                left=[function.metric_duration(statistic="p90")],
                width=8,
            ),
        )

    def _alarm(self, name: str, metric: cloudwatch.Metric, about: str) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            name,
            alarm_name=f"{SELF_ALARM_PREFIX}{name}",
            alarm_description=f"autoremediate itself: {about}",
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )


def _metric(name: str, statistic: str = "Sum") -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=names.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": names.POWERTOOLS_SERVICE},
        statistic=statistic,
        period=Duration.minutes(5),
    )
