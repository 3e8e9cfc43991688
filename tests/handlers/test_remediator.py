"""The remediator handler on moto, with the deployed stack's tables, topic, kill switch and
settings: each outcome, each guardrail letting an action through and stopping it."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client
from remediators.core.guardrails import LOCK_TTL, GuardrailState
from remediators.simulator.fidelity.dynamodb_gsi_eventually_consistent import PROPAGATION
from tests.conftest import LambdaContext, create_function, load_event

Handler = Any


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


def _audit(function_env: dict[str, str], event_id: str) -> AuditRecord:
    record = AuditStore(function_env["AUDIT_TABLE_NAME"]).get(event_id)
    assert record is not None, f"no audit record for {event_id}"
    return record


def _fail(service: str, operation: str, code: str, table: str | None = None) -> Any:
    """Make the remediator's `operation` calls (on `table` only, if given) fail with the real
    botocore error; returns the hook, to unregister."""

    def refuse(params: dict[str, Any], **kwargs: Any) -> None:
        if table is None or params.get("TableName") == table:
            raise ClientError({"Error": {"Code": code, "Message": "refused"}}, operation)

    client(service).meta.events.register(f"before-call.{service}.{operation}", refuse)
    return refuse


def test_a_throttling_alarm_scales_the_table_and_records_before_and_after(
    handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    _table(read=5, write=5)
    event = _event()

    result = handler(event, LambdaContext())

    assert _capacity() == (10, 10)
    assert result["outcome"] == "applied"
    record = _audit(function_env, event["id"])
    assert record.outcome is Outcome.APPLIED
    assert (record.policy, record.action, record.target) == (
        "orders-throttling",
        "dynamodb.scale_capacity",
        "dynamodb:table/orders",
    )
    assert record.target_spec == {"table": "orders"}
    assert record.before is not None
    assert record.after is not None
    assert record.before["capacity"]["table"] == {"read": 5, "write": 5}
    assert record.after["capacity"]["table"] == {"read": 10, "write": 10}
    [message] = inbox()
    assert message["Subject"] == "[autoremediate] Remediated dynamodb:table/orders"
    assert "table read capacity 5 -> 10" in message["Message"]
    assert f"To undo: remediate revert {event['id']}" in message["Message"]


def test_a_malformed_event_is_recorded_invalid_and_acts_on_nothing(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    event = _event()
    del event["detail"]["state"]

    result = handler(event, LambdaContext())

    assert result["outcome"] == "invalid"
    assert "detail.state: Field required" in result["error"]
    assert _audit(function_env, event["id"]).outcome is Outcome.INVALID
    assert _capacity() == (5, 5)


def test_an_event_without_an_id_is_still_recorded(
    handler: Handler, function_env: dict[str, str]
) -> None:
    result = handler({"garbage": True}, LambdaContext())

    assert result["outcome"] == "invalid"
    assert result["event_id"].startswith("invalid-")
    assert _audit(function_env, result["event_id"]).reason == "invalid_event"


@pytest.mark.parametrize(
    ("alarm", "state", "reason"),
    [
        ("orders-ddb-throttle", "INSUFFICIENT_DATA", "not_alarm"),
        ("orders-ddb-throttle", "OK", "ok_without_action"),
        ("unknown-alarm", "ALARM", "no_policy"),
    ],
)
def test_events_no_policy_acts_on_are_recorded_as_skipped_with_the_reason(
    handler: Handler, function_env: dict[str, str], alarm: str, state: str, reason: str
) -> None:
    _table()
    event = _event(alarm, state)

    result = handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == ("skipped", reason)
    assert _audit(function_env, event["id"]).reason == reason
    assert _capacity() == (5, 5)


def test_a_missing_table_is_skipped_as_target_not_found(handler: Handler) -> None:
    result = handler(_event(), LambdaContext())

    assert (result["outcome"], result["reason"]) == ("skipped", "target_not_found")
    assert "table orders does not exist" in result["error"]


# --- guardrail 1: kill switch ---------------------------------------------------------------


def _kill_switch(function_env: dict[str, str], value: str) -> None:
    boto3.client("ssm").put_parameter(
        Name=function_env["KILL_SWITCH_PARAMETER"], Value=value, Type="String", Overwrite=True
    )


def test_kill_switch_enabled_as_deployed_lets_actions_run(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    parameter = boto3.client("ssm").get_parameter(Name=function_env["KILL_SWITCH_PARAMETER"])

    result = handler(_event(), LambdaContext())

    assert parameter["Parameter"]["Value"] == "enabled"
    assert result["outcome"] == "applied"


def test_kill_switch_disabled_records_every_event_as_skipped_disabled(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    _kill_switch(function_env, "disabled")
    event = _event()

    result = handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == ("skipped", "disabled")
    assert _audit(function_env, event["id"]).reason == "disabled"
    assert _capacity() == (5, 5)


def test_a_missing_kill_switch_parameter_counts_as_off(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    boto3.client("ssm").delete_parameter(Name=function_env["KILL_SWITCH_PARAMETER"])

    assert handler(_event(), LambdaContext())["reason"] == "disabled"
    assert _capacity() == (5, 5)


# --- guardrail 2: dry run -------------------------------------------------------------------


def test_dry_run_plans_records_and_notifies_without_changing_the_table(
    handler: Handler, inbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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

    result = handler(_event(), LambdaContext())

    assert (result["outcome"], result["reason"], result["dry_run"]) == ("skipped", "dry_run", True)
    assert result["changes"] == ["table read capacity 5 -> 10", "table write capacity 5 -> 10"]
    assert _capacity() == (5, 5)
    [message] = inbox()
    assert message["Subject"].startswith("[autoremediate] Dry run: would remediate")


# --- guardrail 3: duplicates (idempotency on the event id) ----------------------------------


def test_the_same_event_delivered_twice_acts_once(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    event = _event()

    first = handler(event, LambdaContext())
    second = handler(event, LambdaContext())

    assert first["outcome"] == "applied"
    assert second["duplicate"] is True
    assert second["event_id"] == first["event_id"]
    assert _capacity() == (10, 10)


@pytest.mark.usefixtures("atomic_dynamodb")
def test_twenty_threads_delivering_the_same_event_apply_once(handler: Handler) -> None:
    _table()
    event = _event()

    def deliver(_: int) -> str:
        try:
            result = handler(event, LambdaContext())
        except Exception as error:  # in flight elsewhere: Lambda retries it later
            return type(error).__name__
        return "duplicate" if result.get("duplicate") else str(result["outcome"])

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(deliver, range(20)))

    assert results.count("applied") == 1
    assert set(results) <= {"applied", "duplicate", "IdempotencyAlreadyInProgressError"}
    assert _capacity() == (10, 10)


def test_a_failed_attempt_does_not_block_the_retry(
    handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    _table()
    event = _event()
    hook = _fail("dynamodb", "UpdateTable", "InternalServerError")

    with pytest.raises(Exception, match="InternalServerError"):
        handler(event, LambdaContext())
    failed = _audit(function_env, event["id"])
    client("dynamodb").meta.events.unregister("before-call.dynamodb.UpdateTable", hook)
    retried = handler(event, LambdaContext())

    assert failed.outcome is Outcome.FAILED
    assert failed.escalated is True
    assert "InternalServerError" in (failed.error or "")
    assert retried["outcome"] == "applied"
    assert _capacity() == (10, 10)
    assert any("ESCALATION" in m["Subject"] for m in inbox())


# --- guardrail 4: per-resource lock ---------------------------------------------------------


def test_an_event_for_a_locked_resource_is_skipped_as_locked(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    locks = GuardrailState(
        function_env["LOCKS_TABLE_NAME"], AuditStore(function_env["AUDIT_TABLE_NAME"])
    )

    with locks.hold("dynamodb:table/orders", owner="another-alarm") as held:
        blocked = handler(_event(), LambdaContext())
    released = handler(_event(), LambdaContext())

    assert held is True
    assert (blocked["outcome"], blocked["reason"]) == ("skipped", "locked")
    assert released["outcome"] == "applied"
    assert _capacity() == (10, 10)


@pytest.mark.usefixtures("atomic_dynamodb")
def test_twenty_threads_with_different_alarms_on_one_table_apply_once(handler: Handler) -> None:
    _table()
    events = [_event(alarm=f"orders-ddb-throttle-{i}") for i in range(20)]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda e: handler(e, LambdaContext()), events))

    outcomes = sorted(r["reason"] or r["outcome"] for r in results)
    assert outcomes.count("applied") == 1
    assert set(outcomes) <= {"applied", "locked", "cooldown"}
    assert _capacity() == (10, 10)


# --- guardrail 5: cooldown ------------------------------------------------------------------


def test_an_alarm_right_after_a_change_is_in_cooldown_while_the_audit_index_lags(
    handler: Handler, function_env: dict[str, str]
) -> None:
    # The race of issue 15: the first event changes the table and releases the lock; the
    # second takes the lock within the second the audit table's index takes to show the first
    # record (the GSI fidelity rule). A guardrail that read that index would scale again.
    _table()
    clock.use_simulated_time(frozen=True)

    first = handler(_event(), LambdaContext())
    second = handler(_event(), LambdaContext())
    index_then = AuditStore(function_env["AUDIT_TABLE_NAME"]).history(
        clock.now() - timedelta(hours=1), target="dynamodb:table/orders"
    )

    assert first["outcome"] == "applied"
    assert (second["outcome"], second["reason"]) == ("skipped", "cooldown")
    assert index_then == []  # the index had not caught up: the state item decided
    assert _capacity() == (10, 10)


def test_a_holder_that_died_frees_the_table_at_the_lock_expiry_and_its_state_is_kept(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    clock.use_simulated_time(frozen=True)
    first = handler(_event(), LambdaContext())
    state = GuardrailState(
        function_env["LOCKS_TABLE_NAME"], AuditStore(function_env["AUDIT_TABLE_NAME"])
    )
    died = state.claim("dynamodb:table/orders", "a-lambda-that-died")  # and never releases

    while_held = handler(_event(), LambdaContext())
    clock.advance(LOCK_TTL + timedelta(seconds=1))
    after_expiry = handler(_event(), LambdaContext())  # 5 min on: still in the 15m cooldown
    clock.advance(timedelta(minutes=10))
    after_cooldown = handler(_event(), LambdaContext())

    assert died.held
    assert first["outcome"] == "applied"
    assert (while_held["outcome"], while_held["reason"]) == ("skipped", "locked")
    assert (after_expiry["outcome"], after_expiry["reason"]) == ("skipped", "cooldown")
    assert after_cooldown["outcome"] == "applied"
    assert _capacity() == (20, 20)


def test_a_refire_inside_the_cooldown_is_skipped_and_acts_again_after_it(
    handler: Handler,
) -> None:
    _table()
    clock.use_simulated_time()

    first = handler(_event(), LambdaContext())
    clock.advance(timedelta(minutes=10))
    second = handler(_event(), LambdaContext())
    clock.advance(timedelta(minutes=6))
    third = handler(_event(), LambdaContext())

    assert [first["outcome"], second["reason"], third["outcome"]] == [
        "applied",
        "cooldown",
        "applied",
    ]
    assert _capacity() == (20, 20)


# --- guardrail 6: circuit breaker -----------------------------------------------------------


def test_the_circuit_breaker_stops_the_fourth_change_in_a_day_and_escalates(
    handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    _table(read=1, write=1)
    clock.use_simulated_time()
    results = []
    for _ in range(4):  # max_actions_per_day defaults to 3; the cooldown is 15 minutes
        results.append(handler(_event(), LambdaContext()))
        clock.advance(timedelta(minutes=16))

    assert [r["reason"] or r["outcome"] for r in results] == [
        "applied",
        "applied",
        "applied",
        "circuit_open",
    ]
    assert results[3]["escalated"] is True
    assert "3 changes to dynamodb:table/orders in 24 h (limit 3)" in results[3]["error"]
    assert _capacity() == (8, 8)
    assert inbox()[-1]["Subject"].startswith("[autoremediate] ESCALATION: circuit_open")
    clock.advance(timedelta(hours=24))
    assert handler(_event(), LambdaContext())["outcome"] == "applied"


# --- guardrail 7: hard caps -----------------------------------------------------------------


def test_a_change_past_the_cap_is_clipped_to_it(handler: Handler) -> None:
    _table(read=3000, write=3000)  # orders-throttling caps at 4000

    result = handler(_event(), LambdaContext())

    assert result["outcome"] == "applied"
    assert _capacity() == (4000, 4000)


def test_a_table_at_its_cap_is_skipped_at_cap_and_escalated(handler: Handler, inbox: Any) -> None:
    _table(read=4000, write=4000)

    result = handler(_event(), LambdaContext())

    assert (result["outcome"], result["reason"], result["escalated"]) == (
        "skipped",
        "at_cap",
        True,
    )
    [message] = inbox()
    assert message["Subject"] == "[autoremediate] ESCALATION: at_cap on dynamodb:table/orders"
    assert "already at the policy's maximum" in message["Message"]


# --- recovery -------------------------------------------------------------------------------


def test_the_alarm_back_to_ok_credits_the_action_with_its_time_to_recovery(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    clock.use_simulated_time()
    action = _event()
    handler(action, LambdaContext())
    clock.advance(timedelta(minutes=7))

    recovery = handler(_event(state="OK"), LambdaContext())
    again = handler(_event(state="OK"), LambdaContext())

    assert (recovery["reason"], recovery["recovery_seconds"]) == ("recovered", 420)
    credited = _audit(function_env, action["id"])
    assert credited.recovered_at is not None
    assert credited.recovery_seconds == 420
    assert again["reason"] == "ok_without_action"  # credited once


# --- verification after an action -----------------------------------------------------------


def _alarm(state: str) -> None:
    cloudwatch = boto3.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="orders-ddb-throttle",
        Namespace="AWS/DynamoDB",
        MetricName="WriteThrottleEvents",
        Dimensions=[{"Name": "TableName", "Value": "orders"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName="orders-ddb-throttle", StateValue=state, StateReason="t")


def _verification_schedule() -> dict[str, Any]:
    scheduler = boto3.client("scheduler")
    [summary] = scheduler.list_schedules(GroupName="default")["Schedules"]
    return dict(scheduler.get_schedule(GroupName="default", Name=summary["Name"]))


def test_an_applied_action_schedules_its_verification_30_minutes_later(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    event = _event()

    handler(event, LambdaContext())

    schedule = _verification_schedule()
    recorded = _audit(function_env, event["id"]).recorded_at
    due = (recorded + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
    assert schedule["Name"].startswith("autoremediate-verify-")
    assert schedule["ScheduleExpression"] == f"at({due})"
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["RoleArn"] == function_env["SCHEDULER_ROLE_ARN"]
    assert json.loads(schedule["Target"]["Input"]) == {
        "kind": "verify",
        "id": f"verify-{event['id']}",
        "event_id": event["id"],
    }


def test_verification_escalates_when_the_alarm_is_still_in_alarm(
    handler: Handler, verification_handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    _table()
    _alarm("ALARM")
    event = _event()
    handler(event, LambdaContext())
    inbox()
    request = json.loads(_verification_schedule()["Target"]["Input"])

    result = verification_handler(request, LambdaContext())

    assert result == {"event_id": event["id"], "verified": False}
    record = _audit(function_env, event["id"])
    assert (record.verified, record.escalated) == (False, True)
    [message] = inbox()
    assert message["Subject"] == "[autoremediate] ESCALATION: unresolved on dynamodb:table/orders"


def test_verification_records_success_quietly_when_the_alarm_left_alarm(
    handler: Handler, verification_handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    _table()
    _alarm("ALARM")
    event = _event()
    handler(event, LambdaContext())
    inbox()
    _alarm("OK")

    request = json.loads(_verification_schedule()["Target"]["Input"])
    result = verification_handler(request, LambdaContext())

    assert result["verified"] is True
    assert _audit(function_env, event["id"]).escalated is False
    assert inbox() == []


# --- lambda.raise_timeout through the handler ---------------------------------------------


def test_a_timeout_alarm_raises_the_functions_timeout_and_records_it(
    handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    create_function("api-handler", timeout=10)
    event = _event(alarm="api-handler-timeouts")

    result = handler(event, LambdaContext())

    config = boto3.client("lambda").get_function_configuration(FunctionName="api-handler")
    assert config["Timeout"] == 15
    assert result["outcome"] == "applied"
    record = _audit(function_env, event["id"])
    assert (record.action, record.target) == ("lambda.raise_timeout", "lambda:function/api-handler")
    assert record.before is not None
    assert record.after is not None
    assert (record.before["timeout"], record.after["timeout"]) == (10, 15)
    assert inbox()[0]["Subject"] == "[autoremediate] Remediated lambda:function/api-handler"


def test_a_lost_notification_or_schedule_never_fails_an_applied_change(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    event = _event()

    _fail("sns", "Publish", "InternalError")
    _fail("scheduler", "CreateSchedule", "InternalError")

    result = handler(event, LambdaContext())

    assert result["outcome"] == "applied"
    assert _audit(function_env, event["id"]).outcome is Outcome.APPLIED
    assert _capacity() == (10, 10)


def _live_version() -> str:
    return str(
        boto3.client("lambda").get_alias(FunctionName="checkout", Name="live")["FunctionVersion"]
    )


def _pending_rollback(handler: Handler) -> tuple[dict[str, Any], dict[str, Any]]:
    """An error alarm on checkout:live (serving version 2) handed to the approval flow: the
    event, and the request its execution started with."""
    from tests.actions.test_lambda_rollback_alias import publish_versions

    create_function("checkout")
    publish_versions(2)
    boto3.client("lambda").create_alias(FunctionName="checkout", Name="live", FunctionVersion="2")
    event = _event(alarm="checkout-live-errors")
    result = handler(event, LambdaContext())
    assert (result["outcome"], result["reason"]) == ("pending", "awaiting_approval")
    execution = boto3.client("stepfunctions").describe_execution(
        executionArn=result["approval"]["execution"]
    )
    return event, json.loads(execution["input"])


def _approval_task(
    deployed: Any, monkeypatch: pytest.MonkeyPatch, task: dict[str, Any], request: dict[str, Any]
) -> dict[str, Any]:
    """Run a task of the approval flow with the deployed tasks function's environment, as Step
    Functions does after the operator's decision."""
    import importlib

    import remediators.flows.approval as flow

    [tasks] = [
        name for key, name in deployed.resources.items() if key.startswith("RemediatorTasks")
    ]
    configuration = boto3.client("lambda").get_function_configuration(FunctionName=tasks)
    for key, value in configuration["Environment"]["Variables"].items():
        monkeypatch.setenv(key, value)
    decision = {
        "approval_id": request["approval_id"],
        "decision": "approve",
        "decided_at": clock.now().isoformat(),
        "source_ip": "198.51.100.7",
        "user_agent": "test",
    }
    event = {"request": request, "decision": decision, **task}
    result: dict[str, Any] = importlib.reload(flow).lambda_handler(event, LambdaContext())
    return result


def test_an_error_alarm_on_an_alias_waits_for_approval_then_rolls_it_back_one_version(
    deployed: Any, handler: Handler, function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    event, request = _pending_rollback(handler)

    # Risky: planned, handed to the approval flow, nothing changed yet.
    assert _live_version() == "2"
    pending = _audit(function_env, event["id"])
    assert pending.approval is not None
    assert pending.approval["execution"].endswith(":" + request["approval_id"])
    assert request["plan"]["after"] == {"version": "1", "weights": {}}

    applied = _approval_task(deployed, monkeypatch, {"task": "apply"}, request)

    assert _live_version() == "1"
    assert applied["outcome"] == "applied"
    record = _audit(function_env, event["id"])
    assert record.target == "lambda:function/checkout:live"
    assert (record.before, record.after) == (
        {"version": "2", "weights": {}},
        {"version": "1", "weights": {}},
    )
    assert record.approval is not None
    assert record.approval["source_ip"] == "198.51.100.7"


def test_a_redelivered_event_waiting_for_approval_asks_once(
    handler: Handler, function_env: dict[str, str]
) -> None:
    event, request = _pending_rollback(handler)
    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=function_env["IDEMPOTENCY_TABLE_NAME"])["Items"]:
        dynamodb.delete_item(
            TableName=function_env["IDEMPOTENCY_TABLE_NAME"], Key={"id": item["id"]}
        )

    again = handler(event, LambdaContext())

    assert (again["outcome"], again["reason"]) == ("skipped", "duplicate")
    executions = boto3.client("stepfunctions").list_executions(
        stateMachineArn=function_env["APPROVAL_STATE_MACHINE_ARN"]
    )["executions"]
    assert [e["name"] for e in executions] == [request["approval_id"]]


def test_an_approved_plan_is_not_applied_to_a_resource_changed_since(
    deployed: Any,
    handler: Handler,
    function_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    inbox: Any,
) -> None:
    event, request = _pending_rollback(handler)
    # Someone points the alias elsewhere while the approval waits.
    boto3.client("lambda").update_alias(FunctionName="checkout", Name="live", FunctionVersion="1")

    result = _approval_task(deployed, monkeypatch, {"task": "apply"}, request)

    assert (result["outcome"], result["reason"]) == ("skipped", "changed_since_approval")
    assert _live_version() == "1"
    record = _audit(function_env, event["id"])
    assert record.escalated
    assert record.error is not None
    assert "version 2 -> 1" in record.error
    subjects = [message["Subject"] for message in inbox()]
    assert (
        "[autoremediate] ESCALATION: changed_since_approval on lambda:function/checkout:live"
        in subjects
    )


def test_a_timed_out_approval_applies_nothing_and_escalates(
    deployed: Any,
    handler: Handler,
    function_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    inbox: Any,
) -> None:
    event, request = _pending_rollback(handler)

    result = _approval_task(
        deployed, monkeypatch, {"task": "conclude", "ending": "timeout"}, request
    )

    assert (result["outcome"], result["reason"]) == ("skipped", "approval_timeout")
    assert _live_version() == "2"
    record = _audit(function_env, event["id"])
    assert record.escalated
    assert record.approval == {"id": request["approval_id"], "decision": "timeout"}
    assert any("ESCALATION: approval_timeout" in m["Subject"] for m in inbox())


def test_lifted_blocks_and_reverts_carried_over_from_the_audit_trail_count_for_nothing(
    function_env: dict[str, str],
) -> None:
    store = AuditStore(function_env["AUDIT_TABLE_NAME"])
    now = clock.now()
    target = "wafv2:ipset/REGIONAL/blocked-ips"
    for event_id, reason, reverts in (
        ("block", None, None),
        ("lifted", "expired", None),
        ("undone", "revert", "block"),
    ):
        store.put(
            AuditRecord(
                event_id=event_id,
                outcome=Outcome.APPLIED,
                reason=reason,
                reverts=reverts,
                policy="block-attackers",
                target=target,
                started_at=now,
                recorded_at=now,
            )
        )

    clock.advance(PROPAGATION)  # the trail's index shows them a second later
    state = GuardrailState(function_env["LOCKS_TABLE_NAME"], store).carried_over(target, now)

    assert [change.event for change in state.changes] == ["block"]
    assert set(state.last_applied) == {"block-attackers"}


# --- after the change is made, nothing may make the event act again -------------------------


def test_a_failed_record_transaction_after_the_change_keeps_the_record_and_the_cooldown(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    clock.use_simulated_time()
    event = _event()
    hook = _fail("dynamodb", "TransactWriteItems", "ThrottlingException")

    result = handler(event, LambdaContext())
    client("dynamodb").meta.events.unregister("before-call.dynamodb.TransactWriteItems", hook)
    clock.advance(timedelta(minutes=1))
    again = handler(_event(), LambdaContext())

    assert result["outcome"] == "applied"
    assert _audit(function_env, event["id"]).outcome is Outcome.APPLIED
    assert (again["outcome"], again["reason"]) == ("skipped", "cooldown")
    assert _capacity() == (10, 10)


def test_a_redelivery_after_the_idempotency_key_expired_does_not_act_again(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    clock.use_simulated_time()
    event = _event()
    handler(event, LambdaContext())
    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=function_env["IDEMPOTENCY_TABLE_NAME"])["Items"]:
        dynamodb.delete_item(
            TableName=function_env["IDEMPOTENCY_TABLE_NAME"], Key={"id": item["id"]}
        )
    clock.advance(timedelta(days=2))  # past cooldown and circuit breaker

    again = handler(event, LambdaContext())

    assert (again["outcome"], again["reason"]) == ("skipped", "duplicate")
    assert _audit(function_env, event["id"]).outcome is Outcome.APPLIED
    assert _capacity() == (10, 10)


def test_a_throttled_kill_switch_read_fails_the_event_for_a_retry_instead_of_skipping_it(
    handler: Handler, function_env: dict[str, str]
) -> None:
    _table()
    event = _event()

    _fail("ssm", "GetParameter", "ThrottlingException")

    with pytest.raises(ClientError, match="ThrottlingException"):
        handler(event, LambdaContext())
    assert _audit(function_env, event["id"]).outcome is Outcome.FAILED
    assert _capacity() == (5, 5)


def test_an_operators_revert_counts_neither_for_cooldown_nor_for_recovery(
    handler: Handler, function_env: dict[str, str]
) -> None:
    from remediators.core.operations import deployed_settings, revert_action

    _table()
    clock.use_simulated_time()
    action = _event()
    handler(action, LambdaContext())  # 5 -> 10
    clock.advance(timedelta(minutes=16))
    revert_action(deployed_settings(), action["id"])  # 10 -> 5
    clock.advance(timedelta(minutes=1))

    refire = handler(_event(), LambdaContext())
    clock.advance(timedelta(minutes=1))
    recovery = handler(_event(state="OK"), LambdaContext())

    assert refire["outcome"] == "applied"  # the revert did not start a cooldown
    assert recovery["changes"] == [f"alarm back to OK 60 s after action {refire['event_id']}"]


def test_verification_after_the_alarm_recovered_does_not_escalate(
    handler: Handler, verification_handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    _table()
    _alarm("ALARM")
    clock.use_simulated_time()
    event = _event()
    handler(event, LambdaContext())
    clock.advance(timedelta(minutes=5))
    handler(_event(state="OK"), LambdaContext())  # recovered
    _alarm("ALARM")  # a new incident later on
    inbox()

    request = json.loads(_verification_schedule()["Target"]["Input"])
    result = verification_handler(request, LambdaContext())

    assert result["verified"] is True
    assert inbox() == []


def _execution_ended(status: str, flow_input: dict[str, Any]) -> dict[str, Any]:
    """The event Step Functions sends to EventBridge when a Standard execution ends."""
    machine = (
        "arn:aws:states:us-east-1:123456789012:stateMachine:autoremediate-Autoremediate-restore"
    )
    execution = machine.replace(":stateMachine:", ":execution:") + ":restore-1"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": "123456789012",
        "time": "2026-11-26T19:40:00Z",
        "region": "us-east-1",
        "resources": [execution],
        "detail": {
            "executionArn": execution,
            "stateMachineArn": machine,
            "name": "restore-1",
            "status": status,
            "startDate": 1795700000000,
            "stopDate": 1795700400000,
            "input": json.dumps(flow_input),
            "output": None,
        },
    }


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_a_flow_that_ended_without_recording_its_outcome_is_recorded_failed_and_escalated(
    flow_ended_handler: Any, function_env: dict[str, str], inbox: Any, status: str
) -> None:
    audit = AuditStore(function_env["AUDIT_TABLE_NAME"])
    now = clock.now()
    audit.put(
        AuditRecord(
            event_id="restore-waiting",
            outcome=Outcome.PENDING,
            reason="awaiting_cutover_approval",
            policy="orders-restore",
            action="dynamodb.restore_from_backup",
            target="dynamodb:table/orders",
            approval={"id": "a1", "execution": "x"},
            started_at=now,
            recorded_at=now,
        )
    )

    result = flow_ended_handler(
        _execution_ended(status, {"start": {"event_id": "restore-waiting"}}), LambdaContext()
    )

    assert (result["outcome"], result["reason"]) == ("failed", "flow_ended")
    record = audit.get("restore-waiting")
    assert record is not None
    assert (record.outcome, record.reason, record.escalated) == (Outcome.FAILED, "flow_ended", True)
    assert record.error is not None
    assert f"ended {status} before it recorded an outcome" in record.error
    assert record.approval == {"id": "a1", "execution": "x"}  # who was asked is kept
    [message] = inbox()
    assert message["Subject"] == "[autoremediate] ESCALATION: flow_ended on dynamodb:table/orders"


def test_a_flow_that_recorded_its_own_ending_is_left_as_it_recorded(
    flow_ended_handler: Any, function_env: dict[str, str], inbox: Any
) -> None:
    audit = AuditStore(function_env["AUDIT_TABLE_NAME"])
    now = clock.now()
    final = AuditRecord(
        event_id="restore-done",
        outcome=Outcome.FAILED,
        reason="restore_failed",
        target="dynamodb:table/orders",
        started_at=now,
        recorded_at=now,
    )
    audit.put(final)
    event = _execution_ended("FAILED", {"start": {"event_id": "restore-done"}})

    result = flow_ended_handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == ("skipped", "flow_recorded")
    assert audit.get("restore-done") == final
    assert audit.get(event["id"]) is not None  # the status change itself is on the record
    assert inbox() == []


def test_verification_of_an_action_whose_alarm_cannot_be_read_escalates(
    handler: Handler, verification_handler: Handler, function_env: dict[str, str], inbox: Any
) -> None:
    # Given an applied action whose alarm is gone by its deadline (deleted, or a composite
    # alarm DescribeAlarms does not return to a narrower permission)
    _table()
    _alarm("ALARM")
    event = _event()
    handler(event, LambdaContext())
    inbox()
    boto3.client("cloudwatch").delete_alarms(AlarmNames=["orders-ddb-throttle"])

    # When its verification is due
    request = json.loads(_verification_schedule()["Target"]["Input"])
    result = verification_handler(request, LambdaContext())

    # Then nothing is taken for recovered: a person is asked to look
    assert result == {"event_id": event["id"], "verified": False}
    assert _audit(function_env, event["id"]).verified is False
    [message] = inbox()
    assert message["Subject"] == (
        "[autoremediate] ESCALATION: unverifiable on dynamodb:table/orders"
    )


def test_a_table_another_writer_is_updating_is_scaled_from_its_new_capacity_once_done(
    handler: Handler, function_env: dict[str, str]
) -> None:
    # Given a table another writer has just updated (UPDATING for a while, as DynamoDB is)
    _table()
    boto3.client("dynamodb").update_table(
        TableName="orders", ProvisionedThroughput={"ReadCapacityUnits": 6, "WriteCapacityUnits": 6}
    )

    # When the throttling alarm's event arrives meanwhile
    event = _event()
    result = handler(event, LambdaContext())

    # Then the remediator waits for the other update and doubles what it set
    assert (result["outcome"], result["reason"]) == ("applied", None)
    assert _capacity() == (12, 12)


def test_a_table_still_updating_after_the_wait_is_skipped_and_escalated(
    handler: Handler, function_env: dict[str, str], inbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remediators.simulator.fidelity import dynamodb_table_updating

    # Given a table whose update by another writer takes longer than the remediator waits
    monkeypatch.setattr(dynamodb_table_updating, "UPDATING_FOR", timedelta(minutes=10))
    _table()
    boto3.client("dynamodb").update_table(
        TableName="orders", ProvisionedThroughput={"ReadCapacityUnits": 6, "WriteCapacityUnits": 6}
    )
    inbox()

    # When the throttling alarm's event arrives
    result = handler(_event(), LambdaContext())

    # Then nothing is changed, and a person is told (never a failure for another's update)
    assert (result["outcome"], result["reason"]) == ("skipped", "table_updating")
    assert result["escalated"] is True
    [message] = inbox()
    assert message["Subject"] == (
        "[autoremediate] ESCALATION: table_updating on dynamodb:table/orders"
    )
