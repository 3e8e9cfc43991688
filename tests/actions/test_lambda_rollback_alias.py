"""lambda.rollback_alias on moto: back one version, a canary stopped, nothing to go back to,
revert, errors."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.actions.lambda_rollback_alias import (
    AliasTarget,
    RollbackAlias,
    RollbackAliasParams,
)
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmEvent
from remediators.simulator.resources import wait_for_update
from tests.conftest import create_function, load_event

pytestmark = pytest.mark.usefixtures("aws")


def publish_versions(count: int, function: str = "checkout") -> None:
    """Publish `count` versions (each after a configuration change, so each is new)."""
    lambda_client = boto3.client("lambda")
    for number in range(1, count + 1):
        lambda_client.update_function_configuration(FunctionName=function, Timeout=number)
        wait_for_update(function)  # Lambda refuses to publish while it updates
        lambda_client.publish_version(FunctionName=function)


def _alias(version: str, weights: dict[str, float] | None = None) -> None:
    boto3.client("lambda").create_alias(
        FunctionName="checkout",
        Name="live",
        FunctionVersion=version,
        **({"RoutingConfig": {"AdditionalVersionWeights": weights}} if weights else {}),
    )


def _serving() -> tuple[str, dict[str, float]]:
    alias = boto3.client("lambda").get_alias(FunctionName="checkout", Name="live")
    weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return alias["FunctionVersion"], weights


def _action() -> RollbackAlias:
    return RollbackAlias(AliasTarget(function="checkout", alias="live"), RollbackAliasParams())


@pytest.fixture(autouse=True)
def function(aws: None) -> None:
    create_function("checkout")
    publish_versions(3)


def test_the_alias_goes_back_one_published_version() -> None:
    _alias("3")
    action = _action()

    plan = action.plan()
    action.apply(plan)

    assert plan.changes == ["alias live: version 3 -> 2"]
    assert _serving() == ("2", {})
    assert action.read_back() == {"version": "2", "weights": {}}


def test_a_canary_in_progress_is_stopped_and_the_primary_serves_everything() -> None:
    # Given a canary deploy: version 2 serves, 10% goes to the new version 3
    _alias("2", weights={"3": 0.1})
    action = _action()

    plan = action.plan()
    action.apply(plan)

    # Then the canary stops: all traffic to 2, never below it (1 would be older than before)
    assert plan.changes == [
        "alias live: split between version 2 and 3 (10%) stopped, all traffic to version 2"
    ]
    assert _serving() == ("2", {})
    assert action.read_back() == {"version": "2", "weights": {}}


def test_a_new_primary_with_the_old_version_weighted_goes_back_to_the_old_one() -> None:
    # Given a gradual deploy the other way round: the new version 3 primary, 50% still on 2
    _alias("3", weights={"2": 0.5})
    action = _action()

    action.apply(action.plan())

    # Then everything goes to 2, the version from before the deploy (not to 3, the suspect)
    assert _serving() == ("2", {})


def test_reverting_a_stopped_canary_restarts_it() -> None:
    _alias("2", weights={"3": 0.1})
    action = _action()
    plan = action.plan()
    action.apply(plan)

    action.revert(plan.before)

    assert _serving() == ("2", {"3": 0.1})


def test_with_no_earlier_version_there_is_nothing_to_do() -> None:
    _alias("1")

    plan = _action().plan()

    assert plan.skip_reason == "no_previous_version"
    assert _serving() == ("1", {})


def test_revert_points_the_alias_back_to_what_it_served() -> None:
    _alias("3")
    action = _action()
    plan = action.plan()
    action.apply(plan)

    action.revert(plan.before)

    assert _serving() == ("3", {})


def test_a_missing_alias_raises_target_not_found() -> None:
    with pytest.raises(TargetNotFound, match="alias live of function checkout does not exist"):
        _action().plan()


def test_an_update_alias_error_becomes_an_action_error() -> None:
    _alias("3")

    def refuse(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}},
            "UpdateAlias",
        )

    client("lambda").meta.events.register("before-call.lambda.UpdateAlias", refuse)
    action = _action()

    with pytest.raises(ActionError, match="TooManyRequestsException"):
        action.apply(action.plan())
    assert _serving() == ("3", {})


def test_the_alias_comes_from_the_resource_dimension_and_it_is_risky() -> None:
    raw = load_event("single_metric")
    raw["detail"]["configuration"]["metrics"][0]["metricStat"]["metric"] = {
        "namespace": "AWS/Lambda",
        "name": "Errors",
        "dimensions": {"FunctionName": "checkout", "Resource": "checkout:live"},
    }

    alarm = AlarmEvent.model_validate(raw).detail

    assert RollbackAlias.target_from_alarm(alarm) == AliasTarget(function="checkout", alias="live")
    assert RollbackAlias.risky is True
