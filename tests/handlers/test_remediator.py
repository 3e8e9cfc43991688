"""The remediator handler on moto, with the deployed stack's audit table, topic and settings."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.audit import AuditStore, Outcome
from remediators.core.aws import client
from tests.conftest import load_event

pytestmark = pytest.mark.usefixtures("function_env")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The handler, imported only once the deployed environment is set, as in Lambda
    (Powertools reads its service name and metrics namespace at import)."""
    from remediators.handlers.remediator import lambda_handler as handler

    return handler(event, context)


@pytest.fixture
def inbox(function_env: dict[str, str]) -> Any:
    """An SQS queue subscribed to the ops topic; returns a function reading its messages."""
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = json.loads(function_env["NOTIFICATION_TOPICS"])["ops"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read() -> list[dict[str, str]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return read


def _context() -> Any:
    return SimpleNamespace(
        function_name="remediator",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:remediator",
        aws_request_id=str(uuid.uuid4()),
    )


def _table(name: str = "orders", read: int = 5, write: int = 5) -> None:
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write},
    )


def _capacity(name: str = "orders") -> tuple[int, int]:
    throughput = boto3.client("dynamodb").describe_table(TableName=name)["Table"][
        "ProvisionedThroughput"
    ]
    return throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]


def _event(alarm: str = "orders-ddb-throttle", state: str = "ALARM") -> dict[str, Any]:
    event = load_event("single_metric")
    event["id"] = str(uuid.uuid4())
    event["detail"]["alarmName"] = alarm
    event["detail"]["state"]["value"] = state
    return event


def _audit(function_env: dict[str, str], event_id: str) -> Any:
    return AuditStore(function_env["AUDIT_TABLE_NAME"]).get(event_id)


def test_a_throttling_alarm_scales_the_table_and_records_before_and_after(
    function_env: dict[str, str], inbox: Any
) -> None:
    _table(read=5, write=5)
    event = _event()

    result = lambda_handler(event, _context())

    assert _capacity() == (10, 10)
    assert result["outcome"] == "applied"
    record = _audit(function_env, event["id"])
    assert record.outcome is Outcome.APPLIED
    assert (record.policy, record.action, record.target) == (
        "orders-throttling",
        "dynamodb.scale_capacity",
        "dynamodb:table/orders",
    )
    assert record.before["capacity"]["table"] == {"read": 5, "write": 5}
    assert record.after["capacity"]["table"] == {"read": 10, "write": 10}
    assert record.alarm == "orders-ddb-throttle"
    [message] = inbox()
    assert message["Subject"] == "[autoremediate] Remediated dynamodb:table/orders"
    assert "table read capacity 5 -> 10" in message["Message"]


def test_a_malformed_event_is_recorded_invalid_and_acts_on_nothing(
    function_env: dict[str, str],
) -> None:
    _table()
    event = _event()
    del event["detail"]["state"]

    result = lambda_handler(event, _context())

    assert result["outcome"] == "invalid"
    assert "detail.state: Field required" in result["error"]
    assert _audit(function_env, event["id"]).outcome is Outcome.INVALID
    assert _capacity() == (5, 5)


def test_an_event_without_an_id_is_still_recorded(function_env: dict[str, str]) -> None:
    result = lambda_handler({"garbage": True}, _context())

    assert result["outcome"] == "invalid"
    assert result["event_id"].startswith("invalid-")
    assert _audit(function_env, result["event_id"]) is not None


@pytest.mark.parametrize(
    ("alarm", "state", "reason"),
    [
        ("orders-ddb-throttle", "OK", "not_alarm"),
        ("orders-ddb-throttle", "INSUFFICIENT_DATA", "not_alarm"),
        ("unknown-alarm", "ALARM", "no_policy"),
    ],
)
def test_events_no_policy_acts_on_are_recorded_as_skipped_with_the_reason(
    function_env: dict[str, str], alarm: str, state: str, reason: str
) -> None:
    _table()
    event = _event(alarm, state)

    result = lambda_handler(event, _context())

    assert (result["outcome"], result["reason"]) == ("skipped", reason)
    assert _audit(function_env, event["id"]).reason == reason
    assert _capacity() == (5, 5)


def test_a_refire_inside_the_cooldown_is_skipped_and_acts_again_after_it(
    function_env: dict[str, str],
) -> None:
    _table()
    clock.use_simulated_time()

    first = lambda_handler(_event(), _context())
    clock.advance(timedelta(minutes=10))
    second = lambda_handler(_event(), _context())
    clock.advance(timedelta(minutes=6))
    third = lambda_handler(_event(), _context())

    assert [first["outcome"], second["reason"], third["outcome"]] == [
        "applied",
        "cooldown",
        "applied",
    ]
    assert _capacity() == (20, 20)


def test_dry_run_plans_records_and_notifies_without_changing_the_table(
    function_env: dict[str, str], inbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _table()
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "defaults": {"dry_run": True, "notify": "ops"},
                "notifications": {"ops": {"email": ["oncall@example.com"]}},
                "policies": [
                    {
                        "name": "orders-throttling",
                        "alarm": {"name_prefix": "orders-ddb-throttle"},
                        "action": "dynamodb.scale_capacity",
                    }
                ],
            }
        )
    )
    monkeypatch.setenv("POLICY_PATH", str(policy))

    result = lambda_handler(_event(), _context())

    assert (result["outcome"], result["reason"], result["dry_run"]) == ("skipped", "dry_run", True)
    assert result["changes"] == ["table read capacity 5 -> 10", "table write capacity 5 -> 10"]
    assert _capacity() == (5, 5)
    [message] = inbox()
    assert message["Subject"].startswith("[autoremediate] Dry run: would remediate")


def test_a_failed_change_is_recorded_and_notified_then_raised_for_retry(
    function_env: dict[str, str], inbox: Any
) -> None:
    _table()
    event = _event()

    def refuse(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "LimitExceededException", "Message": "subscriber limit"}},
            "UpdateTable",
        )

    client("dynamodb").meta.events.register("before-call.dynamodb.UpdateTable", refuse)

    with pytest.raises(Exception, match="LimitExceededException"):
        lambda_handler(event, _context())

    record = _audit(function_env, event["id"])
    assert record.outcome is Outcome.FAILED
    assert "LimitExceededException: subscriber limit" in record.error
    assert _capacity() == (5, 5)
    [message] = inbox()
    assert "Remediation failed" in message["Subject"]


def test_a_missing_table_is_skipped_as_target_not_found(function_env: dict[str, str]) -> None:
    result = lambda_handler(_event(), _context())

    assert (result["outcome"], result["reason"]) == ("skipped", "target_not_found")
    assert "table orders does not exist" in result["error"]
