"""A scenario's resources in the local AWS: create them, and read their state back."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import boto3

from remediators.core import clock
from remediators.simulator.scenario import (
    AccessLogSpec,
    AlarmSpec,
    FunctionSpec,
    IpSetSpec,
    MetricSpec,
    Resources,
    TableSpec,
)

__all__ = [
    "create_alarms",
    "create_function",
    "create_resources",
    "put_metrics",
    "read_function",
    "read_ip_set",
    "read_resources",
    "read_restored",
    "read_table",
    "release_code",
    "wait_for_update",
]


def create_resources(resources: Resources) -> None:
    """Create every resource the scenario lists."""
    for table in resources.dynamodb_tables:
        _create_table(table)
    for function in resources.lambda_functions:
        create_function(function)
    for ip_set in resources.waf_ip_sets:
        _wafv2(ip_set.scope).create_ip_set(
            Name=ip_set.name,
            Scope=ip_set.scope,
            IPAddressVersion=ip_set.version,
            Addresses=ip_set.addresses,
        )
    for access_log in resources.access_logs:
        _write_access_log(access_log)
    for name, value in resources.ssm_parameters.items():
        boto3.client("ssm").put_parameter(Name=name, Value=value, Type="String")


def _write_access_log(spec: AccessLogSpec) -> None:
    """JSON lines as API Gateway writes them, spread over the minute before now."""
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=spec.group)
    logs.create_log_stream(logGroupName=spec.group, logStreamName="simulated")
    end = int(clock.now().timestamp() * 1000)
    lines = [
        json.dumps({"ip": address, "status": spec.status, "path": "/checkout"})
        for address, count in sorted(spec.requests.items())
        for _ in range(count)
    ]
    events = [
        {"timestamp": end - 60_000 + (i * 60_000) // max(1, len(lines)), "message": line}
        for i, line in enumerate(lines)
    ]
    for start in range(0, len(events), 5000):
        logs.put_log_events(
            logGroupName=spec.group,
            logStreamName="simulated",
            logEvents=events[start : start + 5000],
        )


def read_resources(resources: Resources) -> dict[str, Any]:
    """The current state of every resource the scenario lists, read from the local AWS."""
    return {
        "dynamodb_tables": {
            table.name: read_table(table.name) for table in resources.dynamodb_tables
        },
        "lambda_functions": {
            function.name: read_function(function.name) for function in resources.lambda_functions
        },
        "waf_ip_sets": {ip_set.name: read_ip_set(ip_set) for ip_set in resources.waf_ip_sets},
        "restored_tables": {
            table.name: read_restored(table.name) for table in resources.dynamodb_tables
        },
        "ssm_parameters": {
            name: boto3.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
            for name in resources.ssm_parameters
        },
    }


def read_restored(source: str) -> dict[str, Any]:
    """The restored copies of `source` (`<source>-restored-*`): how many, and the latest's
    name, items, PITR, TTL, tags (ours aside) and autoscaling."""
    ddb = boto3.client("dynamodb")
    prefix = f"{source}-restored-"
    copies = sorted(
        name
        for page in ddb.get_paginator("list_tables").paginate()
        for name in page["TableNames"]
        if name.startswith(prefix)
    )
    state: dict[str, Any] = {"copies": len(copies)}
    if not copies:
        return state
    name = copies[-1]
    table = ddb.describe_table(TableName=name)["Table"]
    pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags", [])
    return state | {
        "name": name,
        "items": ddb.scan(TableName=name, Select="COUNT")["Count"],
        "pitr": pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED",
        "ttl": ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") == "ENABLED" else None,
        "tags": {t["Key"]: t["Value"] for t in tags if not t["Key"].startswith("autoremediate:")},
        "autoscaling": read_table(name).get("autoscaling", {}),
    }


def read_ip_set(spec: IpSetSpec) -> dict[str, Any]:
    """The addresses of an IP set, sorted."""
    wafv2 = _wafv2(spec.scope)
    summaries = wafv2.list_ip_sets(Scope=spec.scope)["IPSets"]
    [summary] = [s for s in summaries if s["Name"] == spec.name]
    ip_set = wafv2.get_ip_set(Name=spec.name, Scope=spec.scope, Id=summary["Id"])["IPSet"]
    return {"addresses": sorted(ip_set["Addresses"])}


def _wafv2(scope: str) -> Any:
    """WAF's client for `scope`: CloudFront's is us-east-1's endpoint, from any region
    (https://docs.aws.amazon.com/waf/latest/APIReference/API_CreateIPSet.html)."""
    return boto3.client("wafv2", region_name="us-east-1" if scope == "CLOUDFRONT" else None)


def read_function(name: str) -> dict[str, Any]:
    """Timeout and memory of `$LATEST`, and for each alias the version it serves, its weights
    and that version's timeout and memory."""
    lambda_client = boto3.client("lambda")
    config = lambda_client.get_function_configuration(FunctionName=name)
    aliases = lambda_client.list_aliases(FunctionName=name)["Aliases"]
    state: dict[str, Any] = {"timeout": config["Timeout"], "memory": config["MemorySize"]}
    environment = config.get("Environment", {}).get("Variables", {})
    if environment:
        state["environment"] = environment
    reserved = lambda_client.get_function_concurrency(FunctionName=name)
    if "ReservedConcurrentExecutions" in reserved:
        state["reserved"] = reserved["ReservedConcurrentExecutions"]
    if aliases:
        state["aliases"] = {}
        for alias in aliases:
            served = lambda_client.get_function_configuration(
                FunctionName=name, Qualifier=alias["FunctionVersion"]
            )
            weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            state["aliases"][alias["Name"]] = {
                "version": alias["FunctionVersion"],
                "weights": dict(weights),
                "timeout": served["Timeout"],
                "memory": served["MemorySize"],
            }
    return state


def read_table(name: str) -> dict[str, Any]:
    """Billing mode, capacity of the table and each GSI, and autoscaling bounds."""
    table = boto3.client("dynamodb").describe_table(TableName=name)["Table"]
    state: dict[str, Any] = {
        "billing": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "read": table["ProvisionedThroughput"]["ReadCapacityUnits"],
        "write": table["ProvisionedThroughput"]["WriteCapacityUnits"],
    }
    indexes = {
        index["IndexName"]: {
            "read": index["ProvisionedThroughput"]["ReadCapacityUnits"],
            "write": index["ProvisionedThroughput"]["WriteCapacityUnits"],
        }
        for index in table.get("GlobalSecondaryIndexes", [])
    }
    if indexes:
        state["indexes"] = indexes
    scalable = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="dynamodb", ResourceIds=[f"table/{name}"]
    )["ScalableTargets"]
    if scalable:
        state["autoscaling"] = {
            ("read" if t["ScalableDimension"].endswith("ReadCapacityUnits") else "write"): {
                "min": t["MinCapacity"],
                "max": t["MaxCapacity"],
            }
            for t in scalable
        }
    return state


def create_alarms(alarms: list[AlarmSpec]) -> None:
    """Create the metric alarms (they start in OK, as a healthy alarm would be)."""
    cloudwatch = boto3.client("cloudwatch")
    for alarm in alarms:
        options: dict[str, Any] = {}
        if alarm.description:
            options["AlarmDescription"] = alarm.description
        cloudwatch.put_metric_alarm(
            AlarmName=alarm.name,
            Namespace=alarm.namespace,
            MetricName=alarm.metric,
            Dimensions=[{"Name": k, "Value": v} for k, v in alarm.dimensions.items()],
            Statistic=alarm.statistic,
            Period=alarm.period,
            EvaluationPeriods=alarm.evaluation_periods,
            Threshold=alarm.threshold,
            ComparisonOperator=alarm.comparison,
            **options,
        )
        cloudwatch.set_alarm_state(
            AlarmName=alarm.name, StateValue="OK", StateReason="created by the simulator"
        )


def put_metrics(metrics: list[MetricSpec]) -> None:
    """Put each series' datapoints one minute apart, the last one now."""
    cloudwatch = boto3.client("cloudwatch")
    now = clock.now()
    for series in metrics:
        count = len(series.values)
        cloudwatch.put_metric_data(
            Namespace=series.namespace,
            MetricData=[
                {
                    "MetricName": series.metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in series.dimensions.items()],
                    "Timestamp": now.replace(second=0, microsecond=0) - (count - 1 - i) * _MINUTE,
                    "Value": value,
                }
                for i, value in enumerate(series.values)
            ],
        )


def create_function(function: FunctionSpec) -> None:
    """A Lambda function with its role, versions and aliases (its code is never run)."""
    role = boto3.client("iam").create_role(
        RoleName=f"{function.name}-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    boto3.client("lambda").create_function(
        FunctionName=function.name,
        Runtime="python3.13",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": release_code(0)},
        Timeout=function.timeout,
        MemorySize=function.memory,
        Environment={"Variables": function.environment},
    )
    lambda_client = boto3.client("lambda")
    for number in range(1, function.versions + 1):
        # Each published version is a release of new code, as a deploy pipeline makes them.
        lambda_client.update_function_code(FunctionName=function.name, ZipFile=release_code(number))
        wait_for_update(function.name)
        lambda_client.publish_version(FunctionName=function.name, Description=f"release {number}")
    for name, alias in function.aliases.items():
        lambda_client.create_alias(
            FunctionName=function.name,
            Name=name,
            FunctionVersion=alias.version,
            RoutingConfig={"AdditionalVersionWeights": alias.weights},
        )
    if function.reserved is not None:
        lambda_client.put_function_concurrency(
            FunctionName=function.name, ReservedConcurrentExecutions=function.reserved
        )


def release_code(number: int) -> bytes:
    """The deployment package of release `number` (its own code, so its own CodeSha256)."""
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr(
            "index.py", f"RELEASE = {number}\n\ndef handler(event, context):\n    return event\n"
        )
    return code.getvalue()


def wait_for_update(name: str) -> None:
    """Until the function's last update has settled (Lambda updates are asynchronous:
    https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html)."""
    lambda_client = boto3.client("lambda")
    for _ in range(60):
        status = lambda_client.get_function_configuration(FunctionName=name)
        if status.get("LastUpdateStatus") != "InProgress":
            return
        clock.sleep(1)
    raise RuntimeError(f"function {name} is still updating")


def _create_table(table: TableSpec) -> None:
    provisioned = table.billing == "PROVISIONED"
    attributes = {"id"} | {index.key for index in table.indexes}
    request: dict[str, Any] = {
        "TableName": table.name,
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in sorted(attributes)
        ],
        "BillingMode": table.billing,
    }
    if provisioned:
        request["ProvisionedThroughput"] = {
            "ReadCapacityUnits": table.read,
            "WriteCapacityUnits": table.write,
        }
    if table.indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": [{"AttributeName": index.key, "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                **(
                    {
                        "ProvisionedThroughput": {
                            "ReadCapacityUnits": index.read,
                            "WriteCapacityUnits": index.write,
                        }
                    }
                    if provisioned
                    else {}
                ),
            }
            for index in table.indexes
        ]
    ddb = boto3.client("dynamodb")
    created = ddb.create_table(**request)["TableDescription"]
    for start in range(0, table.items, 25):
        ddb.batch_write_item(
            RequestItems={
                table.name: [
                    {"PutRequest": {"Item": {"id": {"S": f"item-{i + 1:04d}"}}}}
                    for i in range(start, min(start + 25, table.items))
                ]
            }
        )
    if table.pitr:
        ddb.update_continuous_backups(
            TableName=table.name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    if table.ttl:
        ddb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl},
        )
    if table.tags:
        ddb.tag_resource(
            ResourceArn=created["TableArn"],
            Tags=[{"Key": key, "Value": value} for key, value in sorted(table.tags.items())],
        )
    if table.backup:
        ddb.create_backup(TableName=table.name, BackupName=f"{table.name}-backup")
    autoscaling = boto3.client("application-autoscaling")
    for dimension, bounds in table.autoscaling.items():
        autoscaling.register_scalable_target(
            ServiceNamespace="dynamodb",
            ResourceId=f"table/{table.name}",
            ScalableDimension=f"dynamodb:table:{dimension.capitalize()}CapacityUnits",
            MinCapacity=bounds.min,
            MaxCapacity=bounds.max,
        )


_MINUTE = timedelta(minutes=1)
