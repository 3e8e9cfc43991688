"""`remediate revert` and `remediate history` on moto, against the deployed stack."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from remediators.cli.main import main
from remediators.core import clock
from remediators.core.audit import AuditStore, Outcome
from remediators.simulator.fidelity.dynamodb_gsi_eventually_consistent import PROPAGATION
from tests.conftest import ROOT, LambdaContext, load_event


@pytest.fixture
def applied(handler: Any) -> str:
    """orders scaled 5 -> 10 by an alarm; returns the action's event id."""
    boto3.client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    event = load_event("single_metric")
    assert handler(event, LambdaContext())["outcome"] == "applied"
    return str(event["id"])


def _capacity() -> tuple[int, int]:
    throughput = boto3.client("dynamodb").describe_table(TableName="orders")["Table"][
        "ProvisionedThroughput"
    ]
    return throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]


def _records(function_env: dict[str, str]) -> list[Any]:
    items = boto3.client("dynamodb").scan(TableName=function_env["AUDIT_TABLE_NAME"])["Items"]
    return [AuditStore._from_item(item) for item in items]


def test_revert_restores_the_before_state_and_is_audited(
    applied: str, function_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["revert", applied])

    assert status == 0
    assert _capacity() == (5, 5)
    [record] = [r for r in _records(function_env) if r.reverts == applied]
    assert (record.outcome, record.reason) == (Outcome.APPLIED, "revert")
    assert record.after is not None
    assert record.after["capacity"]["table"] == {"read": 5, "write": 5}
    assert "capacity.table.read 10 -> 5" in capsys.readouterr().out


def test_revert_refuses_when_the_resource_changed_since_and_records_the_refusal(
    applied: str, function_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("dynamodb").update_table(
        TableName="orders",
        ProvisionedThroughput={"ReadCapacityUnits": 50, "WriteCapacityUnits": 10},
    )

    status = main(["revert", applied])

    assert status == 2
    assert "changed since" in capsys.readouterr().err
    assert _capacity() == (50, 10)
    [refusal] = [r for r in _records(function_env) if r.reverts == applied]
    assert (refusal.outcome, refusal.reason) == (Outcome.SKIPPED, "changed_since")
    assert "capacity.table.read 10 -> 50" in (refusal.error or "")


def test_revert_force_restores_even_when_changed_since(applied: str) -> None:
    boto3.client("dynamodb").update_table(
        TableName="orders",
        ProvisionedThroughput={"ReadCapacityUnits": 50, "WriteCapacityUnits": 10},
    )

    assert main(["revert", applied, "--force"]) == 0
    assert _capacity() == (5, 5)


def test_revert_refuses_unknown_and_non_applied_events(
    handler: Any, function_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    skipped = load_event("single_metric")
    skipped["detail"]["alarmName"] = "nobody-watches-this"
    handler(skipped, LambdaContext())

    assert main(["revert", "no-such-event"]) == 2
    assert main(["revert", skipped["id"]]) == 2
    err = capsys.readouterr().err
    assert "no audit record for no-such-event" in err
    assert "changed nothing (skipped)" in err


def test_history_lists_the_records_newest_first(
    applied: str, handler: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    later = load_event("single_metric")
    later["id"] = "later-event"
    handler(later, LambdaContext())  # inside the cooldown: skipped
    clock.advance(PROPAGATION)  # `--resource` reads an index, which lags its writes

    assert main(["history", "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert out.index("later-event") < out.index(applied)
    assert "skipped:cooldown" in out
    assert main(["history", "--resource", "dynamodb:table/orders", "--json"]) == 0
    records = __import__("json").loads(capsys.readouterr().out)
    assert [r["event_id"] for r in records] == ["later-event", applied]


def test_history_with_a_bad_since_or_stack_exits_2(
    function_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "--since", "yesterday"]) == 2
    assert main(["history", "--stack", "NoSuchStack"]) == 2
    err = capsys.readouterr().err
    assert "is not a duration" in err
    assert "stack 'NoSuchStack' not found" in err


def test_dead_letters_are_listed_with_their_error_then_replayed_and_removed(
    function_env: dict[str, str],
    deployed: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqs = boto3.client("sqs")
    queue = __import__("json").loads(deployed.outputs["DeadLetterQueues"])["function"]
    event = load_event("single_metric")
    # The functions of every kind share the queue: a verification and a flow's end wait too.
    verification = {"kind": "verify", "id": "verify-e1", "event_id": "e1"}
    ended = {
        "id": "ended-1",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {"status": "FAILED"},
    }
    for body in (event, verification, ended):
        sqs.send_message(
            QueueUrl=queue,
            MessageBody=__import__("json").dumps(body),
            MessageAttributes={
                "ErrorCode": {"DataType": "String", "StringValue": "Unhandled"},
                "ErrorMessage": {"DataType": "String", "StringValue": "ActionError: boom"},
            },
        )
    invoked: list[tuple[str, str]] = []
    monkeypatch.setattr(
        "remediators.core.operations._invoke_async",
        lambda function, replayed: invoked.append((function, replayed["id"])),
    )

    assert main(["dead-letters"]) == 0
    listing = capsys.readouterr().out
    assert main(["dead-letters", "--replay"]) == 0
    replayed = capsys.readouterr().out

    assert f"function  {event['id']}  alarm orders-ddb-throttle: Unhandled ActionError: boom" in (
        listing
    )
    assert "replayed 3 events" in replayed
    functions = __import__("json").loads(deployed.outputs["HandlerFunctions"])
    assert functions["alarm"] == deployed.outputs["RemediatorFunctionName"]
    assert sorted(invoked) == sorted(
        [
            (functions["alarm"], event["id"]),
            (functions["verification"], "verify-e1"),
            (functions["flow_ended"], "ended-1"),
        ]
    )
    assert len(set(functions.values())) == len(functions) == 4  # one function per kind
    assert (
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
        == "0"
    )


def _event_file(tmp_path: Any, alarm: str = "orders-ddb-throttle") -> str:
    event = load_event("single_metric")
    event["id"] = "explained-event"  # not the id the `applied` fixture acted on
    event["detail"]["alarmName"] = alarm
    path = tmp_path / "event.json"
    path.write_text(__import__("json").dumps(event))
    return str(path)


def test_explain_names_the_rule_and_policy_and_plans_without_changing_anything(
    function_env: dict[str, str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )

    assert main(["explain", _event_file(tmp_path), "--policy", str(ROOT / "remediation.yaml")]) == 0

    out = capsys.readouterr().out
    assert "matched rule Autoremediate-TriggersAlarmRule" in out
    assert "policy orders-throttling: dynamodb.scale_capacity on dynamodb:table/orders" in out
    assert "would apply: applied" in out
    assert "change: table read capacity 5 -> 10" in out
    assert _capacity() == (5, 5)
    assert _records(function_env) == []


def test_explain_shows_the_guardrail_that_would_stop_the_event(
    applied: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", _event_file(tmp_path), "--policy", str(ROOT / "remediation.yaml")]) == 0

    assert "would be recorded as: skipped:cooldown" in capsys.readouterr().out


def test_explain_an_event_no_rule_matches(
    function_env: dict[str, str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _event_file(tmp_path, alarm="somebody-elses-alarm")

    assert main(["explain", path, "--policy", str(ROOT / "remediation.yaml")]) == 0

    out = capsys.readouterr().out
    assert "no deployed rule matches" in out
    assert "skipped:no_policy" in out


def test_explain_with_a_missing_event_file_exits_2(
    function_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "missing.json"]) == 2
    assert "missing.json: cannot read event" in capsys.readouterr().err


def test_explain_an_event_that_already_acted(
    applied: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    event = load_event("single_metric")  # the very event the fixture applied
    path = tmp_path / "event.json"
    path.write_text(__import__("json").dumps(event))

    assert main(["explain", str(path), "--policy", str(ROOT / "remediation.yaml")]) == 0

    assert "would be recorded as: skipped:duplicate" in capsys.readouterr().out


def test_explain_a_flow_ending_says_what_its_function_does(
    function_env: dict[str, str], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the event Step Functions sends when a watched execution fails
    event = {
        "version": "0",
        "id": "ended-1",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-12-02T03:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "status": "FAILED",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:"
            "autoremediate-Autoremediate-restore",
        },
    }
    path = tmp_path / "ended.json"
    path.write_text(__import__("json").dumps(event))

    # When it is explained
    assert main(["explain", str(path), "--policy", str(ROOT / "remediation.yaml")]) == 0

    # Then it is routed to the flow-ended function and described as such, not as a bad alarm
    out = capsys.readouterr().out
    assert "matched rule Autoremediate-FlowWatchEnded" in out
    assert "not an alarm event: a flow's execution ended" in out
    assert "not a well-formed alarm event" not in out


def test_a_replay_with_a_kind_the_stack_does_not_deploy_sends_nothing() -> None:
    from remediators.core.errors import AutoremediateError
    from remediators.core.operations import DeadLetter, replay

    letters = [
        DeadLetter("function", load_event("single_metric"), "", "r1", "q"),
        DeadLetter("function", {"kind": "verify", "id": "v", "event_id": "e"}, "", "r2", "q"),
    ]
    sent: list[str] = []

    with pytest.raises(AutoremediateError, match="verification"):
        replay(letters, {"alarm": "remediator"}, invoke=lambda f, e: sent.append(f))
    assert sent == []


def test_a_stack_deployed_before_the_kinds_had_functions_replays_to_its_remediator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from remediators.core import operations

    monkeypatch.setattr(
        operations, "stack_outputs", lambda name: {"RemediatorFunctionName": "old-remediator"}
    )

    assert operations.handler_functions("Autoremediate") == {"alarm": "old-remediator"}
