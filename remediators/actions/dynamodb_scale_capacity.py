"""`dynamodb.scale_capacity`: raise a throttled table's provisioned capacity (runbook 2).

The table and each global secondary index are scaled by `factor`, capped by the policy's
maximum and by the default per-table quota, and never lowered. A dimension under Application
Auto Scaling is changed through its scalable target, since the scaler would undo an
UpdateTable: its maximum is raised, and when the scaler is already pinned at that maximum its
minimum is raised too, so the capacity arrives now rather than after the scaler's next alarm.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from botocore.exceptions import ClientError
from pydantic import Field

from remediators.core import clock
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.registry import Action, Params, Permission, Plan, Target, register

__all__ = ["DYNAMODB_TABLE_QUOTA", "ScaleCapacity", "ScaleCapacityParams", "TableTarget"]

# Default per-table quota of read and of write capacity units (Service Quotas can raise it).
DYNAMODB_TABLE_QUOTA = 40_000
# UpdateTable is asynchronous: wait this long for ACTIVE before recording what was read.
_ACTIVE_POLLS, _ACTIVE_POLL_SECONDS = 20, 3.0
_DIMENSIONS = {"read": "ReadCapacityUnits", "write": "WriteCapacityUnits"}


class TableTarget(Target):
    """A DynamoDB table by name."""

    table: str = Field(min_length=3, max_length=255, pattern=r"^[a-zA-Z0-9_.-]+$")

    @property
    def resource_key(self) -> str:
        return f"dynamodb:table/{self.table}"


class ScaleCapacityParams(Params):
    """How far to scale: capacity times `factor`, at most `max_read` / `max_write`."""

    factor: float = Field(default=2.0, gt=1.0, le=10.0)
    max_read: int = Field(default=DYNAMODB_TABLE_QUOTA, ge=1, le=DYNAMODB_TABLE_QUOTA)
    max_write: int = Field(default=DYNAMODB_TABLE_QUOTA, ge=1, le=DYNAMODB_TABLE_QUOTA)

    def cap(self, dimension: str) -> int:
        """The highest capacity this policy allows for `read` or `write`."""
        return self.max_read if dimension == "read" else self.max_write


@register
class ScaleCapacity(Action[ScaleCapacityParams, TableTarget]):
    """Raise provisioned read/write capacity of a table and its GSIs."""

    name: ClassVar[str] = "dynamodb.scale_capacity"
    summary: ClassVar[str] = "Raise a throttled table's provisioned capacity (table and GSIs)."
    params_model = ScaleCapacityParams
    target_model = TableTarget
    risky: ClassVar[bool] = False

    @classmethod
    def permissions(cls, target: TableTarget | None) -> list[Permission]:
        table = target.table if target else "*"
        return [
            Permission(
                actions=("dynamodb:DescribeTable", "dynamodb:UpdateTable"),
                resources=(f"arn:{{partition}}:dynamodb:{{region}}:{{account}}:table/{table}",),
                why_wildcard=None
                if target
                else "the policy names no table: it is taken from the alarm's dimensions",
            ),
            Permission(
                actions=("application-autoscaling:RegisterScalableTarget",),
                resources=(
                    "arn:{partition}:application-autoscaling:{region}:{account}:scalable-target/*",
                ),
                why_wildcard="scalable-target ARNs end in a random id, unknown at deploy time",
            ),
            Permission(
                actions=("application-autoscaling:DescribeScalableTargets",),
                resources=("*",),
                why_wildcard="DescribeScalableTargets supports no resource-level permissions",
            ),
        ]

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> TableTarget | None:
        table = alarm.dimension("AWS/DynamoDB", "TableName")
        return TableTarget(table=table) if table else None

    def plan(self) -> Plan:
        before = self._read_state()
        if before["billing_mode"] == "PAY_PER_REQUEST":
            return Plan(
                before=before,
                skip_reason="on_demand",
                note="table is on-demand (PAY_PER_REQUEST): there is no capacity to raise",
            )
        after = _copy_state(before)
        changes: list[str] = []
        for unit, capacity in before["capacity"].items():
            for dimension, current in capacity.items():
                cap = self.params.cap(dimension)
                scaling = before["autoscaling"].get(f"{unit}:{dimension}")
                if scaling is None:
                    new = _scaled(current, self.params.factor, cap)
                    if new != current:
                        after["capacity"][unit][dimension] = new
                        changes.append(f"{unit} {dimension} capacity {current} -> {new}")
                    continue
                new_max = _scaled(scaling["max"], self.params.factor, cap)
                # Pinned at its maximum: the scaler cannot help, so raise the floor as well.
                pinned = current >= scaling["max"]
                new_min = (
                    max(scaling["min"], min(_scaled(current, self.params.factor, cap), new_max))
                    if pinned
                    else scaling["min"]
                )
                bounds = {"min": new_min, "max": new_max}
                if bounds != scaling:
                    after["autoscaling"][f"{unit}:{dimension}"] = bounds
                    changes += [
                        f"{unit} {dimension} autoscaling {bound} {scaling[bound]} -> {value}"
                        for bound, value in bounds.items()
                        if value != scaling[bound]
                    ]
        if not changes:
            return Plan(
                before=before,
                after=after,
                skip_reason="at_cap",
                note=f"every dimension is at its cap (max_read {self.params.max_read}, "
                f"max_write {self.params.max_write}, quota {DYNAMODB_TABLE_QUOTA})",
            )
        return Plan(before=before, after=after, changes=changes)

    def apply(self, plan: Plan) -> dict[str, Any]:
        self._write(plan.before, plan.after)
        return self._read_state(wait_active=True)

    def revert(self, before: dict[str, Any]) -> dict[str, Any]:
        self._write(self._read_state(), before)
        return self._read_state(wait_active=True)

    def _write(self, current: dict[str, Any], wanted: dict[str, Any]) -> None:
        """Move the table from `current` to `wanted`: scalable targets, then one UpdateTable."""
        table = self.target.table
        for key, bounds in wanted["autoscaling"].items():
            if current["autoscaling"].get(key) != bounds:
                unit, dimension = key.rsplit(":", 1)
                resource_id, scalable_dimension = _scalable(table, unit, dimension)
                client("application-autoscaling").register_scalable_target(
                    ServiceNamespace="dynamodb",
                    ResourceId=resource_id,
                    ScalableDimension=scalable_dimension,
                    MinCapacity=bounds["min"],
                    MaxCapacity=bounds["max"],
                )
        request: dict[str, Any] = {}
        index_updates = []
        for unit, capacity in wanted["capacity"].items():
            if capacity == current["capacity"].get(unit):
                continue
            throughput = {_DIMENSIONS[d]: v for d, v in sorted(capacity.items())}
            if unit == "table":
                request["ProvisionedThroughput"] = throughput
            else:
                index_name = unit.removeprefix("index/")
                index_updates.append(
                    {"Update": {"IndexName": index_name, "ProvisionedThroughput": throughput}}
                )
        if index_updates:
            request["GlobalSecondaryIndexUpdates"] = index_updates
        if request:
            try:
                client("dynamodb").update_table(TableName=table, **request)
            except ClientError as error:
                raise ActionError(f"UpdateTable {table} failed: {_message(error)}") from error

    def _read_state(self, wait_active: bool = False) -> dict[str, Any]:
        """Capacity per table/GSI and dimension, billing mode, status and autoscaling bounds."""
        table = self.target.table
        for _ in range(_ACTIVE_POLLS if wait_active else 1):
            try:
                description = client("dynamodb").describe_table(TableName=table)["Table"]
            except ClientError as error:
                if error.response["Error"]["Code"] == "ResourceNotFoundException":
                    raise TargetNotFound(f"table {table} does not exist") from error
                raise
            if description["TableStatus"] == "ACTIVE" or not wait_active:
                break
            clock.sleep(_ACTIVE_POLL_SECONDS)
        billing = description.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        capacity = {"table": _throughput(description.get("ProvisionedThroughput", {}))}
        for index in description.get("GlobalSecondaryIndexes", []):
            capacity[f"index/{index['IndexName']}"] = _throughput(
                index.get("ProvisionedThroughput", {})
            )
        state: dict[str, Any] = {
            "status": description["TableStatus"],
            "billing_mode": billing,
            "capacity": capacity,
            "autoscaling": {},
        }
        if billing != "PAY_PER_REQUEST":
            state["autoscaling"] = self._read_autoscaling(list(capacity))
        return state

    def _read_autoscaling(self, units: list[str]) -> dict[str, dict[str, int]]:
        table = self.target.table
        units_by_id = {_resource_id(table, unit): unit for unit in units}
        response = client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="dynamodb", ResourceIds=list(units_by_id)
        )
        bounds = {}
        for scalable in response["ScalableTargets"]:
            unit = units_by_id[scalable["ResourceId"]]
            is_read = scalable["ScalableDimension"].endswith(_DIMENSIONS["read"])
            dimension = "read" if is_read else "write"
            bounds[f"{unit}:{dimension}"] = {
                "min": scalable["MinCapacity"],
                "max": scalable["MaxCapacity"],
            }
        return bounds


def _scaled(current: int, factor: float, cap: int) -> int:
    """`current` times `factor`, rounded up, at most `cap`, never below `current`."""
    return max(current, min(math.ceil(current * factor), cap))


def _throughput(provisioned: dict[str, Any]) -> dict[str, int]:
    return {d: int(provisioned.get(field, 0)) for d, field in _DIMENSIONS.items()}


def _scalable(table: str, unit: str, dimension: str) -> tuple[str, str]:
    """Application Auto Scaling resource id and scalable dimension for a table or GSI."""
    kind = "table" if unit == "table" else "index"
    return _resource_id(table, unit), f"dynamodb:{kind}:{_DIMENSIONS[dimension]}"


def _resource_id(table: str, unit: str) -> str:
    return f"table/{table}" if unit == "table" else f"table/{table}/{unit}"


def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
    return {
        **state,
        "capacity": {unit: dict(c) for unit, c in state["capacity"].items()},
        "autoscaling": {key: dict(b) for key, b in state["autoscaling"].items()},
    }


def _message(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', '')}"
