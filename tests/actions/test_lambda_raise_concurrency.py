"""lambda.raise_concurrency on moto: raise, the policy's cap, the account's unreserved floor,
functions without a reservation or turned off, revert, errors, and alarms end to end."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from remediators.actions.lambda_raise_concurrency import (
    RaiseConcurrency,
    RaiseConcurrencyParams,
)
from remediators.actions.lambda_raise_timeout import FunctionTarget
from remediators.core.audit import AuditStore, Outcome
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmEvent
from remediators.simulator.lambda_runtime import LambdaContext
from tests.conftest import create_function, load_event

pytestmark = pytest.mark.usefixtures("aws")


@pytest.fixture(autouse=True)
def account_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """An account of AWS's default 1,000 concurrent executions, enforced by moto as by AWS
    (no reservation may take the unreserved pool below 100)."""
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "1000")


def _function(name: str = "api-handler", reserved: int | None = None) -> None:
    create_function(name=name)
    if reserved is not None:
        _reserve(name, reserved)


def _reserve(name: str, reserved: int) -> None:
    boto3.client("lambda").put_function_concurrency(
        FunctionName=name, ReservedConcurrentExecutions=reserved
    )


def _reserved(name: str = "api-handler") -> int | None:
    response = boto3.client("lambda").get_function_concurrency(FunctionName=name)
    reserved = response.get("ReservedConcurrentExecutions")
    return None if reserved is None else int(reserved)


def _unreserved() -> int:
    limits = boto3.client("lambda").get_account_settings()["AccountLimit"]
    return int(limits["UnreservedConcurrentExecutions"])


def _action(function: str = "api-handler", **params: Any) -> RaiseConcurrency:
    return RaiseConcurrency(FunctionTarget(function=function), RaiseConcurrencyParams(**params))


def test_plan_computes_the_new_reservation_and_changes_nothing() -> None:
    _function(reserved=10)

    plan = _action(factor=1.5).plan()

    assert plan.before == {"reserved": 10, "concurrency_limit": 1000, "unreserved": 990}
    assert plan.after["reserved"] == 15
    assert plan.changes == [
        "reserved concurrency 10 -> 15",
        "account unreserved concurrency 990 -> 985",
    ]
    assert _reserved() == 10


def test_apply_raises_the_reservation_and_read_back_reports_it() -> None:
    _function(reserved=20)
    action = _action(factor=2)

    action.apply(action.plan())
    after = action.read_back()

    assert _reserved() == 40
    assert after == {"reserved": 40, "concurrency_limit": 1000, "unreserved": 960}


def test_the_policy_maximum_caps_the_reservation() -> None:
    _function(reserved=40)
    action = _action(factor=2, max_reserved=50)

    action.apply(action.plan())

    assert _reserved() == 50


def test_a_reservation_at_the_policy_maximum_is_at_cap_naming_the_policy() -> None:
    _function(reserved=50)

    plan = _action(factor=2, max_reserved=50).plan()

    assert plan.skip_reason == "at_cap"
    assert plan.note == "reserved concurrency 50 is at the policy's max_reserved (50)"
    assert _reserved() == 50


def test_the_account_floor_holds_the_reservation_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an account of 500, of which another function holds 250 and ours 100: 150 unreserved.
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "500")
    _function("billing", reserved=250)
    _function(reserved=100)
    action = _action(factor=2)

    plan = action.plan()
    action.apply(plan)

    # The policy would allow 200; 150 is all that leaves AWS's 100 unreserved.
    assert plan.changes[0] == (
        "reserved concurrency 100 -> 150 (not 200: the account keeps min_unreserved 100)"
    )
    assert (_reserved(), _reserved("billing"), _unreserved()) == (150, 250, 100)


def test_a_policy_floor_above_awss_minimum_is_kept() -> None:
    _function("billing", reserved=500)
    _function(reserved=100)  # 400 unreserved
    action = _action(factor=3, min_unreserved=300)

    action.apply(action.plan())

    assert (_reserved(), _unreserved()) == (200, 300)


def test_an_account_at_its_floor_is_at_cap_naming_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "500")
    _function("billing", reserved=300)
    _function(reserved=100)  # 100 unreserved: AWS's minimum

    plan = _action(factor=2).plan()

    assert plan.skip_reason == "at_cap"
    assert plan.note == (
        "reserved concurrency 100 cannot grow: the account's unreserved concurrency (100) "
        "is at its floor (min_unreserved 100)"
    )
    assert _reserved() == 100


def test_a_pool_already_below_the_policy_floor_never_lowers_the_reservation() -> None:
    _function("billing", reserved=750)
    _function(reserved=100)  # 150 unreserved, the policy wants 200

    plan = _action(factor=2, min_unreserved=200).plan()

    assert (plan.skip_reason, plan.after["reserved"]) == ("at_cap", 100)


def test_a_function_without_a_reservation_is_left_on_the_shared_pool() -> None:
    _function()

    plan = _action().plan()

    assert plan.skip_reason == "no_reservation"
    assert "shares the account's unreserved pool (1000 of 1000)" in plan.note
    assert _reserved() is None


def test_a_function_turned_off_with_a_zero_reservation_stays_off() -> None:
    _function(reserved=0)

    plan = _action().plan()

    assert plan.skip_reason == "turned_off"
    assert _reserved() == 0


def test_revert_restores_the_reservation() -> None:
    _function(reserved=10)
    action = _action(factor=2)
    plan = action.plan()
    action.apply(plan)

    action.revert(plan.before, action.read_back())

    assert _reserved() == 10
    assert action.comparable(action.read_back()) == action.comparable(plan.before)


def test_comparable_ignores_the_account_pool_that_other_functions_move() -> None:
    _function(reserved=10)
    _function("billing")
    action = _action()
    plan = action.plan()

    _reserve("billing", 300)
    now = action.read()

    assert now["unreserved"] == plan.before["unreserved"] - 300
    assert action.comparable(now) == action.comparable(plan.before) == {"reserved": 10}


def test_a_missing_function_raises_target_not_found() -> None:
    with pytest.raises(TargetNotFound, match="function ghost does not exist"):
        _action(function="ghost").plan()


def test_another_writer_taking_the_pool_after_the_plan_is_a_clear_action_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a plan made while 400 of the account's 500 were unreserved...
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "500")
    _function(reserved=100)
    _function("billing")
    action = _action(factor=1.5)
    plan = action.plan()
    # ...and another function reserving 260 before it is applied: 150 would leave 90
    # unreserved, and moto refuses as AWS does.
    _reserve("billing", 260)

    with pytest.raises(ActionError, match="below AWS's minimum; other functions reserved"):
        action.apply(plan)
    assert _reserved() == 100


def test_a_throttled_account_settings_read_becomes_an_action_error() -> None:
    _function(reserved=10)

    def throttled(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}},
            "GetAccountSettings",
        )

    client("lambda").meta.events.register("before-call.lambda.GetAccountSettings", throttled)

    with pytest.raises(
        ActionError, match="GetAccountSettings failed: TooManyRequestsException: Rate exceeded"
    ):
        _action().plan()
    assert _reserved() == 10


def test_the_target_comes_from_the_function_name_dimension() -> None:
    alarm = AlarmEvent.model_validate(_throttles_event("api-handler-throttles")).detail

    assert RaiseConcurrency.target_from_alarm(alarm) == FunctionTarget(function="api-handler")


def test_an_alias_throttles_alarm_targets_the_function_whose_reservation_it_shares() -> None:
    # Reserved concurrency is the function's, all its versions and aliases together.
    event = _throttles_event("api-handler-live-throttles")
    metric = event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"]
    metric["dimensions"]["Resource"] = "api-handler:live"

    alarm = AlarmEvent.model_validate(event).detail

    assert RaiseConcurrency.target_from_alarm(alarm) == FunctionTarget(function="api-handler")


def test_permissions_are_scoped_to_the_named_function_and_the_account_settings_read() -> None:
    function, account = RaiseConcurrency.permissions(FunctionTarget(function="api-handler"))

    assert function.resources == ("arn:{partition}:lambda:{region}:{account}:function:api-handler",)
    assert set(function.actions) == {
        "lambda:GetFunctionConcurrency",
        "lambda:PutFunctionConcurrency",
    }
    assert (account.actions, account.resources) == (("lambda:GetAccountSettings",), ("*",))
    assert account.why_wildcard


@pytest.mark.parametrize(
    "params",
    [{"factor": 1.0}, {"min_unreserved": 99}, {"max_reserved": 0}, {"floor": 100}],
)
def test_params_that_could_lower_or_break_the_account_floor_are_refused(
    params: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        RaiseConcurrencyParams(**params)


# --- end to end: the deployed remediator handler, with a policy of this action --------------


def _throttles_event(alarm: str) -> dict[str, Any]:
    event = load_event("single_metric")
    event["id"] = str(uuid.uuid4())
    event["detail"]["alarmName"] = alarm
    event["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/Lambda",
        "name": "Throttles",
        "dimensions": {"FunctionName": "api-handler"},
    }
    return event


@pytest.fixture
def throttles_handler(handler: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The deployed remediator, reading a policy file that answers api-handler-throttles with
    this action (the target from the alarm's FunctionName dimension)."""
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "policies": [
                    {
                        "name": "api-throttles",
                        "alarm": {"name": "api-handler-throttles"},
                        "action": "lambda.raise_concurrency",
                        "params": {"factor": 2, "max_reserved": 50},
                    }
                ]
            }
        )
    )
    monkeypatch.setenv("POLICY_PATH", str(policy))
    return handler


def test_a_throttles_alarm_raises_the_reservation_and_records_before_and_after(
    throttles_handler: Any, function_env: dict[str, str]
) -> None:
    _function(reserved=20)
    event = _throttles_event("api-handler-throttles")

    result = throttles_handler(event, LambdaContext())

    assert result["outcome"] == "applied"
    assert _reserved() == 40
    record = AuditStore(function_env["AUDIT_TABLE_NAME"]).get(event["id"])
    assert record is not None
    assert (record.outcome, record.action, record.target) == (
        Outcome.APPLIED,
        "lambda.raise_concurrency",
        "lambda:function/api-handler",
    )
    assert record.before is not None
    assert record.after is not None
    assert (record.before["reserved"], record.after["reserved"]) == (20, 40)
    assert record.changes[0] == "reserved concurrency 20 -> 40"


def test_a_throttles_alarm_at_the_policy_maximum_is_skipped_at_cap(
    throttles_handler: Any, function_env: dict[str, str]
) -> None:
    _function(reserved=50)
    event = _throttles_event("api-handler-throttles")

    result = throttles_handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == ("skipped", "at_cap")
    assert _reserved() == 50
    record = AuditStore(function_env["AUDIT_TABLE_NAME"]).get(event["id"])
    assert record is not None
    assert record.escalated is True
    assert record.error == "reserved concurrency 50 is at the policy's max_reserved (50)"
