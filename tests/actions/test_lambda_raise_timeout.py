"""lambda.raise_timeout on moto: raise, cap, 900 s limit, memory, revert, errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.actions.lambda_raise_timeout import (
    RaiseTimeout,
    RaiseTimeoutParams,
    ServedFunctionTarget,
)
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmEvent
from remediators.simulator.resources import create_function as create
from remediators.simulator.resources import release_code
from remediators.simulator.scenario import FunctionSpec
from tests.conftest import create_function, load_event

pytestmark = pytest.mark.usefixtures("aws")


def _configuration(name: str = "api-handler") -> tuple[int, int]:
    config = boto3.client("lambda").get_function_configuration(FunctionName=name)
    return config["Timeout"], config["MemorySize"]


def _action(function: str = "api-handler", **params: Any) -> RaiseTimeout:
    return RaiseTimeout(ServedFunctionTarget(function=function), RaiseTimeoutParams(**params))


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

    assert RaiseTimeout.target_from_alarm(alarm) == ServedFunctionTarget(function="api-handler")


def test_permissions_are_scoped_to_the_named_function() -> None:
    [permission] = RaiseTimeout.permissions(ServedFunctionTarget(function="api-handler"))

    assert permission.resources == (
        "arn:{partition}:lambda:{region}:{account}:function:api-handler",
    )
    assert "lambda:UpdateFunctionConfiguration" in permission.actions


def test_an_update_in_progress_is_waited_for_before_the_change() -> None:
    create_function(timeout=10)
    # Another writer's update (a deploy): Lambda keeps it InProgress and refuses another
    # update meanwhile (the simulator's fidelity rule).
    boto3.client("lambda").update_function_configuration(
        FunctionName="api-handler", Description="deploy"
    )
    action = _action(factor=2, max_seconds=60)

    action.apply(action.plan())

    assert _configuration() == (20, 128)


# --- through an alias: a new version, and the alias moves to it ----------------------------


def _function_with_releases(aliases: dict[str, Any], timeout: int = 40) -> None:
    """`checkout` with releases 1-3 published (each its own code) and `aliases`; $LATEST
    holds release 3."""
    create(FunctionSpec(name="checkout", timeout=timeout, versions=3, aliases=aliases))


def _alias_action(qualifier: str = "live", **params: Any) -> RaiseTimeout:
    target = ServedFunctionTarget(function="checkout", qualifier=qualifier)
    return RaiseTimeout(target, RaiseTimeoutParams(**({"factor": 2, "max_seconds": 60} | params)))


def _served(alias: str = "live") -> tuple[str, int]:
    """The version the alias serves and its timeout (what the alias's invocations run)."""
    config = boto3.client("lambda").get_function_configuration(
        FunctionName="checkout", Qualifier=alias
    )
    return config["Version"], config["Timeout"]


def test_an_alias_gets_a_new_version_with_the_longer_timeout() -> None:
    _function_with_releases({"live": "3"})
    action = _alias_action()

    plan = action.plan()
    action.apply(plan)

    assert plan.changes == [
        "timeout 40 s -> 60 s",
        "published from $LATEST as a new version; alias live moves to it from version 3",
    ]
    assert _served() == ("4", 60)  # what the alias's invocations now run
    assert _configuration("checkout") == (60, 128)  # $LATEST, which version 4 was published from
    version_4 = boto3.client("lambda").get_function_configuration(
        FunctionName="checkout", Qualifier="4"
    )
    version_3 = boto3.client("lambda").get_function_configuration(
        FunctionName="checkout", Qualifier="3"
    )
    assert version_4["CodeSha256"] == version_3["CodeSha256"]  # the same code, more time
    assert action.comparable(action.read_back()) == action.comparable(plan.after)


def test_reverting_an_alias_change_moves_it_back_and_restores_latest() -> None:
    _function_with_releases({"live": "3"})
    action = _alias_action()
    plan = action.plan()
    action.apply(plan)

    action.revert(plan.before, action.read_back())

    assert _served() == ("3", 40)
    assert _configuration("checkout") == (40, 128)


def test_an_alias_whose_version_is_not_latests_code_is_left_alone() -> None:
    _function_with_releases({"live": "2"})  # $LATEST holds release 3's code

    plan = _alias_action().plan()

    assert plan.skip_reason == "latest_differs"
    assert "CodeSha256" in str(plan.note)
    assert _served() == ("2", 40)


def test_an_alias_in_the_middle_of_a_canary_is_left_to_the_deploy() -> None:
    _function_with_releases({"live": {"version": "2", "weights": {"3": 0.1}}})

    plan = _alias_action().plan()

    assert plan.skip_reason == "alias_split"
    assert "3 (10%)" in str(plan.note)


def test_a_published_version_cannot_get_a_longer_timeout() -> None:
    _function_with_releases({})

    plan = _alias_action(qualifier="2").plan()

    assert plan.skip_reason == "published_version"
    assert _served("2") == ("2", 40)


def test_latest_changed_since_the_plan_is_not_published() -> None:
    _function_with_releases({"live": "3"})
    action = _alias_action()
    plan = action.plan()
    boto3.client("lambda").update_function_code(FunctionName="checkout", ZipFile=release_code(4))

    with pytest.raises(ActionError, match="changed since the plan"):
        action.apply(plan)
    assert _served() == ("3", 40)


def test_an_alias_alarm_names_the_alias_and_locks_it_with_rollbacks() -> None:
    raw = load_event("single_metric")
    raw["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/Lambda",
        "name": "Duration",
        "dimensions": {"FunctionName": "checkout", "Resource": "checkout:live"},
    }

    target = RaiseTimeout.target_from_alarm(AlarmEvent.model_validate(raw).detail)

    assert target == ServedFunctionTarget(function="checkout", qualifier="live")
    assert target is not None
    assert target.resource_key == "lambda:function/checkout:live"


def test_an_alias_target_is_granted_the_alias_and_publishing_only() -> None:
    permissions = RaiseTimeout.permissions(
        ServedFunctionTarget(function="checkout", qualifier="live")
    )

    granted = {(action, resource) for p in permissions for action in p.actions
               for resource in p.resources}  # fmt: skip
    arn = "arn:{partition}:lambda:{region}:{account}:function:checkout"
    assert granted == {
        ("lambda:GetFunctionConfiguration", arn),
        ("lambda:UpdateFunctionConfiguration", arn),
        ("lambda:PublishVersion", arn),
        # Lambda authorizes alias calls on the function: an alias-only grant is refused.
        ("lambda:GetAlias", arn),
        ("lambda:UpdateAlias", arn),
        ("lambda:GetAlias", arn + ":live"),
        ("lambda:UpdateAlias", arn + ":live"),
        ("lambda:GetFunctionConfiguration", arn + ":*"),
    }


def test_an_alias_a_canary_started_on_since_the_plan_is_not_moved() -> None:
    _function_with_releases({"live": "3"})
    action = _alias_action()
    plan = action.plan()
    boto3.client("lambda").update_alias(
        FunctionName="checkout",
        Name="live",
        FunctionVersion="3",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )

    with pytest.raises(ActionError, match="moved since the plan"):
        action.apply(plan)
    assert _served() == ("3", 40)
    # And the drift shows to an approval's or a revert's check too.
    assert action.comparable(action.read()) != action.comparable(plan.before)


def test_the_alias_waits_for_its_new_version_to_be_active_and_is_not_moved_if_it_is_not() -> None:
    _function_with_releases({"live": "3"})
    action = _alias_action()
    plan = action.plan()

    def pending(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Version") == "4":  # just published
            parsed["State"] = "Pending"

    client("lambda").meta.events.register("after-call.lambda.GetFunctionConfiguration", pending)

    with pytest.raises(ActionError, match="version 4 of checkout is not Active yet"):
        action.apply(plan)
    assert _served() == ("3", 40)


def test_a_snapstart_function_is_left_to_its_deploy() -> None:
    _function_with_releases({"live": "3"})

    def snapstart(parsed: dict[str, Any], **_: Any) -> None:
        parsed["SnapStart"] = {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}

    client("lambda").meta.events.register("after-call.lambda.GetFunctionConfiguration", snapstart)

    plan = _alias_action().plan()

    assert plan.skip_reason == "snapstart"


def test_what_a_published_version_would_configure_differently_is_named() -> None:
    from remediators.actions.lambda_raise_timeout import _differences

    served = {
        "CodeSha256": "abc",
        "Timeout": 40,
        "Version": "3",
        "VpcConfig": {"SubnetIds": ["a", "b"], "SecurityGroupIds": ["g"]},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "On"},
    }
    latest = served | {
        "Timeout": 60,
        "Version": "$LATEST",
        "VpcConfig": {"SubnetIds": ["b", "a"], "SecurityGroupIds": ["g"],
                      "Ipv6AllowedForDualStack": False},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
    }  # fmt: skip

    assert _differences(served, latest) == []
    assert _differences(served, latest | {"RuntimeVersionConfig": {"RuntimeVersionArn": "x"}}) == [
        "RuntimeVersionConfig"
    ]
    undecrypted = {"Error": {"ErrorCode": "AccessDeniedException"}}
    assert _differences(served | {"Environment": undecrypted},
                        latest | {"Environment": undecrypted}) == ["Environment"]  # fmt: skip


def test_the_settle_wait_does_not_sleep_after_its_last_look() -> None:
    from remediators.actions.lambda_raise_timeout import settled_configuration
    from remediators.core import clock

    create_function(timeout=3)
    boto3.client("lambda").update_function_configuration(FunctionName="api-handler", Timeout=4)
    started = clock.now()

    assert settled_configuration("api-handler", polls=1)["LastUpdateStatus"] == "InProgress"
    assert clock.now() - started < timedelta(seconds=1)
