"""Properties of the capacity arithmetic (hypothesis): never above a cap, never below the
current value, and a revert returns the before-state."""

from __future__ import annotations

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from remediators.actions.dynamodb_scale_capacity import (
    DYNAMODB_TABLE_QUOTA,
    ScaleCapacity,
    ScaleCapacityParams,
    TableTarget,
)
from remediators.core.aws import reset_clients
from remediators.core.limits import scale_up

capacities = st.integers(min_value=1, max_value=DYNAMODB_TABLE_QUOTA)
factors = st.floats(min_value=1.01, max_value=10.0, allow_nan=False)


@given(current=capacities, factor=factors, cap=capacities)
def test_scaling_never_passes_the_cap_unless_already_past_it(
    current: int, factor: float, cap: int
) -> None:
    new = scale_up(current, factor, cap)

    assert new <= max(cap, current)


@given(current=capacities, factor=factors, cap=capacities)
def test_scaling_never_lowers_capacity(current: int, factor: float, cap: int) -> None:
    assert scale_up(current, factor, cap) >= current


@given(current=capacities, factor=factors)
def test_with_room_scaling_always_adds_at_least_one_unit(current: int, factor: float) -> None:
    assert scale_up(current, factor, DYNAMODB_TABLE_QUOTA + current * 11) > current


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    read=st.integers(1, 5000),
    write=st.integers(1, 5000),
    factor=factors,
    max_read=st.integers(1, DYNAMODB_TABLE_QUOTA),
    max_write=st.integers(1, DYNAMODB_TABLE_QUOTA),
)
def test_apply_then_revert_returns_the_before_state_on_moto(
    read: int, write: int, factor: float, max_read: int, max_write: int
) -> None:
    reset_clients()
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": write},
        )
        action = ScaleCapacity(
            TableTarget(table="orders"),
            ScaleCapacityParams(factor=factor, max_read=max_read, max_write=max_write),
        )
        plan = action.plan()
        if plan.skip_reason is None:
            action.apply(plan)
            applied = action.read_back()["capacity"]["table"]
            assert applied["read"] <= max(max_read, read)
            assert applied["write"] <= max(max_write, write)
            assert applied["read"] >= read
            assert applied["write"] >= write
            action.revert(plan.before)
        else:
            assert plan.skip_reason == "at_cap"
        assert action.comparable(action.read_back()) == action.comparable(plan.before)
    reset_clients()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    timeout=st.integers(1, 900),
    factor=factors,
    max_seconds=st.integers(1, 900),
    memory=st.integers(128, 4096),
)
def test_timeout_plans_stay_within_the_caps_and_revert_returns_the_before_state(
    timeout: int, factor: float, max_seconds: int, memory: int
) -> None:
    from remediators.actions.lambda_raise_timeout import (
        LAMBDA_MAX_TIMEOUT,
        RaiseTimeout,
        RaiseTimeoutParams,
        ServedFunctionTarget,
    )
    from tests.conftest import create_function

    reset_clients()
    with mock_aws():
        create_function("fn", timeout=timeout, memory=memory)
        action = RaiseTimeout(
            ServedFunctionTarget(function="fn"),
            RaiseTimeoutParams(factor=factor, max_seconds=max_seconds),
        )
        plan = action.plan()
        planned = plan.after["timeout"] if plan.after else timeout
        assert timeout <= planned <= max(timeout, min(max_seconds, LAMBDA_MAX_TIMEOUT))
        assert (plan.skip_reason == "at_cap") == (planned == timeout)
        if plan.skip_reason is None:
            action.apply(plan)
            action.revert(plan.before)
        assert action.comparable(action.read_back()) == action.comparable(plan.before)
    reset_clients()
