"""lambda.raise_timeout on moto: raise, cap, 900 s limit, memory, revert, errors."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.actions.lambda_raise_timeout import (
    FunctionTarget,
    RaiseTimeout,
    RaiseTimeoutParams,
)
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmEvent
from tests.conftest import create_function, load_event

pytestmark = pytest.mark.usefixtures("aws")


def _configuration(name: str = "api-handler") -> tuple[int, int]:
    config = boto3.client("lambda").get_function_configuration(FunctionName=name)
    return config["Timeout"], config["MemorySize"]


def _action(function: str = "api-handler", **params: Any) -> RaiseTimeout:
    return RaiseTimeout(FunctionTarget(function=function), RaiseTimeoutParams(**params))


def test_plan_computes_the_new_timeout_and_changes_nothing() -> None:
    create_function(timeout=3)

    plan = _action(factor=1.5, max_seconds=60).plan()

    assert plan.changes == ["timeout 3 s -> 5 s"]  # 4.5 rounded up
    assert plan.after["timeout"] == 5
    assert _configuration() == (3, 128)


def test_apply_raises_the_timeout_and_read_back_reports_it() -> None:
    create_function(timeout=10)
    action = _action(factor=2, max_seconds=60)

    action.apply(action.plan())
    after = action.read_back()

    assert _configuration() == (20, 128)
    assert (after["timeout"], after["last_update_status"]) == (20, "Successful")


def test_the_policy_maximum_caps_the_timeout() -> None:
    create_function(timeout=40)
    action = _action(factor=2, max_seconds=60)

    action.apply(action.plan())

    assert _configuration() == (60, 128)


def test_never_past_lambdas_900_seconds() -> None:
    create_function(timeout=600)

    plan = _action(factor=2).plan()

    assert plan.after["timeout"] == 900


def test_a_function_at_its_cap_is_at_cap() -> None:
    create_function(timeout=60)

    plan = _action(factor=2, max_seconds=60).plan()

    assert plan.skip_reason == "at_cap"
    assert "60 s" in plan.note


def test_memory_is_raised_only_when_the_policy_asks() -> None:
    create_function(timeout=3, memory=256)
    action = _action(factor=2, memory_factor=2, max_memory_mb=384)

    action.apply(action.plan())

    assert _configuration() == (6, 384)


def test_revert_restores_timeout_and_memory() -> None:
    create_function(timeout=3, memory=256)
    action = _action(factor=2, memory_factor=1.5)
    plan = action.plan()
    action.apply(plan)

    action.revert(plan.before)

    assert _configuration() == (3, 256)
    assert action.comparable(action.read_back()) == action.comparable(plan.before)


def test_a_missing_function_raises_target_not_found() -> None:
    with pytest.raises(TargetNotFound, match="function ghost does not exist"):
        _action(function="ghost").plan()


def test_an_update_in_progress_conflict_becomes_an_action_error() -> None:
    create_function(timeout=3)

    def conflict(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ResourceConflictException", "Message": "update in progress"}},
            "UpdateFunctionConfiguration",
        )

    client("lambda").meta.events.register(
        "before-call.lambda.UpdateFunctionConfiguration", conflict
    )
    action = _action()

    with pytest.raises(ActionError, match="ResourceConflictException: update in progress"):
        action.apply(action.plan())
    assert _configuration() == (3, 128)


def test_the_target_comes_from_the_function_name_dimension() -> None:
    raw = load_event("single_metric")
    raw["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/Lambda",
        "name": "Duration",
        "dimensions": {"FunctionName": "api-handler"},
    }

    alarm = AlarmEvent.model_validate(raw).detail

    assert RaiseTimeout.target_from_alarm(alarm) == FunctionTarget(function="api-handler")


def test_permissions_are_scoped_to_the_named_function() -> None:
    [permission] = RaiseTimeout.permissions(FunctionTarget(function="api-handler"))

    assert permission.resources == (
        "arn:{partition}:lambda:{region}:{account}:function:api-handler",
    )
    assert "lambda:UpdateFunctionConfiguration" in permission.actions
