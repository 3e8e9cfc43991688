"""What the benchmarks share: fake credentials, the deployed stack on moto, alarm events."""

from __future__ import annotations

import contextlib
import importlib
import os
import statistics
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
}
os.environ.update(FAKE_AWS)
os.environ.pop("AWS_PROFILE", None)


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextmanager
def deployed_handler(
    policy: Path, before_load: Callable[[], None] | None = None
) -> Iterator[tuple[ModuleType, dict[str, str]]]:
    """In-process moto with the stack synthesized from `policy` deployed through CloudFormation,
    and the remediator's handler module loaded (after `before_load`) with the deployed
    environment, as in a fresh execution environment."""
    import boto3
    from moto import mock_aws

    import remediators.actions  # noqa: F401
    from remediators.core.aws import reset_clients
    from remediators.simulator.deploy import deploy, synthesize
    from remediators.simulator.local_aws import LocalAws

    assembly = synthesize(policy)
    reset_clients()
    with mock_aws():
        stack = deploy(assembly, LocalAws(endpoint_url="in-process"))
        environment = boto3.client("lambda").get_function_configuration(
            FunctionName=stack.outputs["RemediatorFunctionName"]
        )["Environment"]["Variables"]
        task_root = next(p for p in assembly.iterdir() if p.name.startswith("asset."))
        saved = dict(os.environ)
        os.environ.update(environment, LAMBDA_TASK_ROOT=str(task_root))
        try:
            quiet = stack_enter(quiet_stdout())
            import remediators.handlers.alarm as module

            reset_clients()
            if before_load:
                before_load()

            yield importlib.reload(module), dict(stack.outputs)
        finally:
            quiet.close()
            os.environ.clear()
            os.environ.update(saved)
    reset_clients()


# Loggers created while stdout is redirected keep writing to this stream: it stays open.
_NULL = open(os.devnull, "w")  # noqa: SIM115


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what the handler logs (Powertools writes JSON to stdout) to /dev/null."""
    with contextlib.redirect_stdout(_NULL):
        yield


def stack_enter(manager: Any) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(manager)
    return stack


def create_table(name: str, read: int = 5, write: int = 5) -> None:
    import boto3

    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write},
    )


def alarm_event(alarm: str, table: str, when: str = "2026-11-26T12:00:00Z") -> dict[str, Any]:
    """A "CloudWatch Alarm State Change" event to ALARM, as CloudWatch sends it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": when,
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"],
        "detail": {
            "alarmName": alarm,
            "state": {"value": "ALARM", "reason": "Threshold Crossed", "timestamp": when},
            "previousState": {"value": "OK", "reason": "", "timestamp": when},
            "configuration": {
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": "AWS/DynamoDB",
                                "name": "WriteThrottleEvents",
                                "dimensions": {"TableName": table},
                            },
                            "period": 60,
                            "stat": "Sum",
                        },
                        "returnData": True,
                    }
                ]
            },
        },
    }
