"""dynamodb.scale_capacity on moto: provisioned, GSI, on-demand, autoscaled, at cap, errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.actions.dynamodb_scale_capacity import (
    ScaleCapacity,
    ScaleCapacityParams,
    TableTarget,
)
from remediators.core import clock
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmEvent
from remediators.simulator.fidelity import dynamodb_capacity_limits
from remediators.simulator.fidelity.dynamodb_capacity_limits import Limits
from remediators.simulator.fidelity.dynamodb_table_updating import UPDATING_FOR
from tests.conftest import load_event

pytestmark = pytest.mark.usefixtures("aws")


def _table(name: str = "orders", read: int = 5, write: int = 5, **extra: Any) -> None:
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "ProvisionedThroughput": {"ReadCapacityUnits": read, "WriteCapacityUnits": write},
    }
    request.update(extra)
    boto3.client("dynamodb").create_table(**request)


def _gsi(read: int, write: int) -> dict[str, Any]:
    return {
        "AttributeDefinitions": [
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "customer", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by-customer",
                "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": read, "WriteCapacityUnits": write},
            }
        ],
    }


def _action(table: str = "orders", **params: Any) -> ScaleCapacity:
    return ScaleCapacity(TableTarget(table=table), ScaleCapacityParams(**params))


def _capacity(table: str = "orders") -> dict[str, Any]:
    """The table's capacity once any update is done (UpdateTable is asynchronous: while the
    table is UPDATING it reports the capacity before; see the fidelity rule)."""
    clock.advance(UPDATING_FOR)
    description = boto3.client("dynamodb").describe_table(TableName=table)["Table"]
    throughput = description["ProvisionedThroughput"]
    result = {"table": (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"])}
    for index in description.get("GlobalSecondaryIndexes", []):
        t = index["ProvisionedThroughput"]
        result[index["IndexName"]] = (t["ReadCapacityUnits"], t["WriteCapacityUnits"])
    return result


def _register(
    dimension: str,
    minimum: int,
    maximum: int,
    resource: str = "table/orders",
    scale_out_suspended: bool = False,
) -> None:
    kind = "index" if "/index/" in resource else "table"
    boto3.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId=resource,
        ScalableDimension=f"dynamodb:{kind}:{dimension}CapacityUnits",
        MinCapacity=minimum,
        MaxCapacity=maximum,
        SuspendedState={"DynamicScalingOutSuspended": scale_out_suspended},
    )


def _bounds(resource: str = "table/orders") -> dict[str, tuple[int, int]]:
    targets = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="dynamodb", ResourceIds=[resource]
    )["ScalableTargets"]
    return {t["ScalableDimension"]: (t["MinCapacity"], t["MaxCapacity"]) for t in targets}


def test_plan_reads_and_computes_without_changing_anything() -> None:
    _table(read=5, write=8)

    plan = _action(factor=2).plan()

    assert plan.skip_reason is None
    assert plan.before["capacity"] == {"table": {"read": 5, "write": 8}}
    assert plan.after["capacity"] == {"table": {"read": 10, "write": 16}}
    assert plan.changes == ["table read capacity 5 -> 10", "table write capacity 8 -> 16"]
    assert _capacity() == {"table": (5, 8)}


def test_apply_raises_capacity_and_read_back_reports_it() -> None:
    _table(read=5, write=8)
    action = _action(factor=2)

    action.apply(action.plan())
    after = action.read_back()

    assert _capacity() == {"table": (10, 16)}
    assert after["capacity"] == {"table": {"read": 10, "write": 16}}
    assert after["status"] == "ACTIVE"


def test_a_fractional_factor_rounds_up_exactly() -> None:
    _table(read=100, write=7)

    plan = _action(factor=1.1).plan()

    # 100 * 1.1 is 110.00000000000001 in floating point: still 110, not 111.
    assert plan.after["capacity"]["table"] == {"read": 110, "write": 8}


def test_each_gsi_is_scaled_with_the_table() -> None:
    _table(read=5, write=5, **_gsi(read=3, write=7))
    action = _action(factor=1.5)

    action.apply(action.plan())

    # ceil(5 * 1.5) = 8, ceil(3 * 1.5) = 5, ceil(7 * 1.5) = 11
    assert _capacity() == {"table": (8, 8), "by-customer": (5, 11)}


def test_the_policy_maximum_caps_each_dimension() -> None:
    _table(read=3000, write=100)
    action = _action(factor=2, max_read=4000, max_write=150)

    action.apply(action.plan())

    assert _capacity() == {"table": (4000, 150)}


def test_the_table_quota_caps_when_the_policy_does_not() -> None:
    _table(read=30_000, write=1)

    plan = _action(factor=2).plan()

    assert plan.after["capacity"]["table"] == {"read": 40_000, "write": 2}


def test_a_table_and_its_gsis_are_planned_within_the_per_table_maximum_together() -> None:
    # Given a table of 30,000 read units whose index has 9,000: 1,000 left of the 40,000 that
    # DynamoDB allows the table and its GSIs together (DescribeLimits' TableMaxReadCapacityUnits)
    _table(read=30_000, write=5, **_gsi(read=9_000, write=5))
    action = _action(factor=2)

    # When the action doubles both
    plan = action.plan()
    action.apply(plan)

    # Then the 1,000 are shared in proportion to what each would have had (10,000 and 9,000),
    # the plan says which limit held them, and DynamoDB takes the change
    assert plan.after["capacity"] == {
        "table": {"read": 30_526, "write": 10},
        "index/by-customer": {"read": 9_474, "write": 10},
    }
    held = "the per-table maximum (TableMaxReadCapacityUnits 40000, for the table and its indexes"
    assert plan.changes[0] == f"table read capacity 30000 -> 30526 (held by {held} together))"
    assert "index/by-customer read held by the per-table maximum" in plan.note
    assert _capacity() == {"table": (30_526, 10), "by-customer": (9_474, 10)}


def test_the_limits_are_the_ones_describe_limits_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an account whose quotas DescribeLimits reports as 1,000 read units per table
    monkeypatch.setattr(dynamodb_capacity_limits, "LIMITS", Limits(table_read=1_000))
    _table(read=400, write=5, **_gsi(read=400, write=5))

    plan = _action(factor=2).plan()

    assert (
        plan.after["capacity"]["table"]["read"]
        + plan.after["capacity"]["index/by-customer"]["read"]
        == 1_000
    )
    assert "TableMaxReadCapacityUnits 1000" in plan.note


def test_an_account_maximum_below_the_table_maximum_holds_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dynamodb_capacity_limits, "LIMITS", Limits(account_read=20_000))
    _table(read=15_000, write=5)

    plan = _action(factor=2).plan()

    assert plan.after["capacity"]["table"] == {"read": 20_000, "write": 10}
    assert "the account's maximum (AccountMaxReadCapacityUnits 20000" in plan.changes[0]


def test_describe_limits_is_read_once_per_plan_and_kept_for_five_minutes() -> None:
    _table(read=5, write=5)
    calls: list[str] = []
    client("dynamodb").meta.events.register(
        "before-call.dynamodb.DescribeLimits", lambda **kwargs: calls.append("DescribeLimits")
    )

    _action().plan()
    _action().plan()
    clock.advance(timedelta(minutes=5))
    _action().plan()

    assert calls == ["DescribeLimits", "DescribeLimits"]


def test_describe_limits_still_throttled_after_the_retries_plans_within_the_default_quota(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an account whose quota is below the default, and DescribeLimits throttled
    monkeypatch.setattr(dynamodb_capacity_limits, "LIMITS", Limits(table_read=1_000))
    _table(read=600, write=5)

    def throttled(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "LimitExceededException", "Message": "Rate exceeded"}},
            "DescribeLimits",
        )

    client("dynamodb").meta.events.register("before-call.dynamodb.DescribeLimits", throttled)

    plan = _action(factor=2).plan()

    # Then the plan holds to the default 40,000 (UpdateTable has the last word), not a failure
    assert plan.after["capacity"]["table"]["read"] == 1_200
    client("dynamodb").meta.events.unregister("before-call.dynamodb.DescribeLimits", throttled)
    assert "TableMaxReadCapacityUnits 1000" in str(_action(factor=2).plan().note)  # not kept


def test_a_table_at_the_per_table_maximum_is_at_cap_and_says_which_limit_held_it() -> None:
    _table(read=30_000, write=5, **_gsi(read=10_000, write=5))

    plan = _action(factor=2, max_write=5).plan()

    assert plan.skip_reason == "at_cap"
    assert "table read held by the per-table maximum (TableMaxReadCapacityUnits 40000" in (
        plan.note
    )
    assert "table write held by the policy's max_write 5" in plan.note


def test_a_scaler_s_maximum_is_raised_only_as_far_as_the_table_leaves_room() -> None:
    # Given a table of 30,000 read units whose index's scaler may take it to 9,000, as it has
    _table(read=30_000, write=5, **_gsi(read=9_000, write=5))
    _register("Read", 1_000, 9_000, resource="table/orders/index/by-customer")

    plan = _action(factor=2).plan()

    # Then the table takes the 1,000 left, and the scaler gets no room past the maximum
    assert plan.after["capacity"]["table"]["read"] == 31_000
    assert plan.after["autoscaling"]["index/by-customer:read"]["max"] == 9_000
    assert "index/by-customer read held by the per-table maximum" in plan.note


def test_an_update_refused_for_the_account_s_quota_fails_saying_so() -> None:
    # Given other tables that hold 79,500 of the account's 80,000 read units, and the table 500
    _table("payments", read=40_000, write=1)
    _table("invoices", read=39_500, write=1)
    _table(read=500, write=5)
    action = _action(factor=2)

    # When the table is doubled (within its own maximum)
    with pytest.raises(ActionError) as failed:
        action.apply(action.plan())

    # Then DynamoDB's refusal fails the change, and the error says what it means
    assert "UpdateTable orders failed: LimitExceededException: This request would have caused" in (
        str(failed.value)
    )
    assert "at the account's quota" in str(failed.value)
    assert _capacity() == {"table": (500, 5)}


def test_capacity_above_the_cap_is_never_lowered() -> None:
    _table(read=5000, write=10)

    plan = _action(factor=2, max_read=4000, max_write=4000).plan()

    assert plan.after["capacity"]["table"] == {"read": 5000, "write": 20}


def test_a_table_at_its_cap_is_skipped_as_at_cap_and_left_alone() -> None:
    _table(read=100, write=100)

    plan = _action(factor=2, max_read=100, max_write=100).plan()

    assert plan.skip_reason == "at_cap"
    assert plan.changes == []
    assert _capacity() == {"table": (100, 100)}


def test_an_on_demand_table_is_skipped_as_on_demand() -> None:
    boto3.client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    plan = _action().plan()

    assert plan.skip_reason == "on_demand"
    assert "PAY_PER_REQUEST" in plan.note


def test_autoscaled_dimensions_get_their_maximum_raised_not_an_update_table() -> None:
    _table(read=50, write=20)
    _register("Read", 10, 50)  # pinned: capacity 50 == max 50
    _register("Write", 5, 100)
    calls: list[str] = []
    client("dynamodb").meta.events.register(
        "before-call.dynamodb.UpdateTable", lambda **kwargs: calls.append("UpdateTable")
    )
    action = _action(factor=2, max_read=400, max_write=400)

    plan = action.plan()
    action.apply(plan)

    assert calls == []
    assert _capacity() == {"table": (50, 20)}  # the scaler owns the capacity
    assert _bounds() == {
        "dynamodb:table:ReadCapacityUnits": (10, 100),
        "dynamodb:table:WriteCapacityUnits": (5, 200),
    }
    assert plan.changes == [
        "table read autoscaling max 50 -> 100",
        "table write autoscaling max 100 -> 200",
    ]


def test_with_scale_out_suspended_the_minimum_is_raised_too() -> None:
    _table(read=50, write=20)
    _register("Read", 10, 50, scale_out_suspended=True)
    action = _action(factor=2, max_read=400)

    action.apply(action.plan())

    assert _bounds()["dynamodb:table:ReadCapacityUnits"] == (100, 100)


def test_a_gsi_under_autoscaling_is_raised_through_its_scalable_target() -> None:
    _table(read=5, write=5, **_gsi(read=40, write=5))
    _register("Read", 5, 40, resource="table/orders/index/by-customer")
    action = _action(factor=2)

    action.apply(action.plan())

    assert _capacity() == {"table": (10, 10), "by-customer": (40, 10)}
    assert _bounds("table/orders/index/by-customer") == {
        "dynamodb:index:ReadCapacityUnits": (5, 80)
    }


def test_an_autoscaled_table_at_its_cap_is_at_cap() -> None:
    _table(read=100, write=100)
    _register("Read", 10, 100)
    _register("Write", 10, 100)

    plan = _action(factor=2, max_read=100, max_write=100).plan()

    assert plan.skip_reason == "at_cap"
    assert plan.changes == []


def test_revert_restores_the_recorded_before_state() -> None:
    _table(read=5, write=5, **_gsi(read=5, write=5))
    _register("Write", 5, 10)
    action = _action(factor=2)
    plan = action.plan()
    action.apply(plan)

    action.revert(plan.before)

    assert _capacity() == {"table": (5, 5), "by-customer": (5, 5)}
    assert _bounds() == {"dynamodb:table:WriteCapacityUnits": (5, 10)}
    assert action.comparable(action.read_back()) == action.comparable(plan.before)


def test_a_missing_table_raises_target_not_found() -> None:
    with pytest.raises(TargetNotFound, match="table ghost does not exist"):
        _action(table="ghost").plan()


def test_an_update_table_error_becomes_an_action_error_and_changes_nothing() -> None:
    _table(read=5, write=5)

    def refuse(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "LimitExceededException", "Message": "too many decreases"}},
            "UpdateTable",
        )

    client("dynamodb").meta.events.register("before-call.dynamodb.UpdateTable", refuse)
    action = _action(factor=2)

    with pytest.raises(ActionError, match="LimitExceededException: too many decreases"):
        action.apply(action.plan())
    assert _capacity() == {"table": (5, 5)}


def test_the_target_comes_from_the_alarm_table_name_dimension() -> None:
    alarm = AlarmEvent.model_validate(load_event("single_metric")).detail
    composite = AlarmEvent.model_validate(load_event("composite")).detail

    assert ScaleCapacity.target_from_alarm(alarm) == TableTarget(table="orders")
    assert ScaleCapacity.target_from_alarm(composite) is None


def test_permissions_are_scoped_to_the_named_table() -> None:
    permissions = ScaleCapacity.permissions(TableTarget(table="orders"))

    table_permission = next(p for p in permissions if "dynamodb:UpdateTable" in p.actions)
    assert table_permission.resources == (
        "arn:{partition}:dynamodb:{region}:{account}:table/orders",
    )
    # DescribeLimits has no resource type: the account's quotas are read on `*`.
    limits = next(p for p in permissions if "dynamodb:DescribeLimits" in p.actions)
    assert (limits.actions, limits.resources) == (("dynamodb:DescribeLimits",), ("*",))


def test_planning_waits_at_most_30_s_for_another_writer_s_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from remediators.simulator.fidelity import dynamodb_table_updating

    monkeypatch.setattr(dynamodb_table_updating, "UPDATING_FOR", timedelta(minutes=30))
    _table(read=5, write=5)
    boto3.client("dynamodb").update_table(
        TableName="orders", ProvisionedThroughput={"ReadCapacityUnits": 6, "WriteCapacityUnits": 6}
    )
    begun = clock.now()

    plan = _action(factor=2).plan()

    assert plan.skip_reason == "table_updating"
    assert timedelta(seconds=30) <= clock.now() - begun <= timedelta(seconds=31)


def test_all_the_waits_of_one_change_fit_well_within_the_function_s_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from remediators.simulator.fidelity import dynamodb_table_updating

    # Given a table whose update will outlast the function (new partitions can take long)
    monkeypatch.setattr(dynamodb_table_updating, "UPDATING_FOR", timedelta(minutes=30))
    _table(read=5, write=5)
    action = _action(factor=2)
    begun = clock.now()

    # When the action changes it and reads it back
    action.apply(action.plan())
    after = action.read_back()

    # Then it stops waiting in time, and says what it read (the function has 120 s)
    assert after["status"] == "UPDATING"
    assert clock.now() - begun <= timedelta(seconds=76)  # 75 s of waits, and the calls
