"""`dynamodb.scale_capacity`: raise a throttled table's provisioned capacity (runbook 2).

The table and each global secondary index are scaled by `factor`, capped by the policy's
maximum, and never lowered; the table and its GSIs together stay within the limits that
DescribeLimits reports (one call, its answer kept a few minutes): the per-table maximum, or the
account's if that is lower. When the increases do not all fit, each is cut by the same
fraction. A dimension under Application Auto Scaling is changed through its scalable target,
since the scaler would undo an UpdateTable: its maximum is raised so the scaler can go higher
(no higher than it could go with the other units as planned), and its minimum only when dynamic
scale-out is suspended (the scaler would not use the room). Whatever a cap or limit holds back
is named in the plan's changes and note; a plan held back to nothing is `at_cap`.

The account's headroom (its maximum less what all other tables hold) is not computed: AWS's way
is a DescribeTable of every table (ListTables, then each table and its GSIs), thousands of calls
in a large account, within this function's timeout, on a role that may read this table only,
and stale by the time UpdateTable lands. DynamoDB checks it itself: its refusal
(LimitExceededException) fails the change with a reason that says the account is at its quota.
"""

from __future__ import annotations

import logging
import sys
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from remediators.core import clock
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.limits import scale_up
from remediators.core.registry import Action, Params, Permission, Plan, Target, register

__all__ = ["DYNAMODB_TABLE_QUOTA", "ScaleCapacity", "ScaleCapacityParams", "TableTarget"]

logger = logging.getLogger(__name__)

# Default per-table quota of read and of write capacity units (Service Quotas can raise it):
# the bound of the policy's max_read and max_write. Plans are capped by what DescribeLimits says.
DYNAMODB_TABLE_QUOTA = 40_000
# "DescribeLimits should only be called periodically. You can expect throttling errors if you
# call it more than once in a minute."
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DescribeLimits.html
# Its answer is kept for _LIMITS_FOR by the client that read it (an execution environment's), so
# that a storm of alarms reads it once per environment, not once per table. A quota raised
# meanwhile is used that much later: meanwhile the plans are lower, never refused.
_LIMITS_FOR = timedelta(minutes=5)
_THROTTLED = frozenset({"ThrottlingException", "LimitExceededException", "RequestLimitExceeded"})
# UpdateTable is asynchronous: the table is UPDATING for a while and refuses another update
# (ResourceInUseException, which botocore does not retry):
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTable.html
# The waits for ACTIVE, polled every _ACTIVE_POLL_SECONDS: before planning (another writer's
# update) at most _PLAN_WAIT_SECONDS; all of one action's waits together (plan, the scalable
# targets, the read-back) at most _WAIT_BUDGET_SECONDS, well within the function's 120 s.
_ACTIVE_POLL_SECONDS = 3.0
_PLAN_WAIT_SECONDS = 30.0
_WAIT_BUDGET_SECONDS = 75.0
_DIMENSIONS = {"read": "ReadCapacityUnits", "write": "WriteCapacityUnits"}
# What UpdateTable's LimitExceededException texts mean. The texts are not documented: these are
# as observed (the evidence is cited by the simulator's fidelity rule dynamodb_capacity_limits).
_LIMIT_REFUSALS = {
    "reserved by the account": "the region's tables together are at the account's quota: this "
    "table can grow only once other tables shrink or the quota is raised (Service Quotas)",
    "per table maximum": "the table and its indexes together are at the per-table quota "
    "(Service Quotas can raise it)",
}


@dataclass(frozen=True)
class _Limit:
    """The most one dimension of a table and its GSIs may hold together, and the limit that
    says so (in words, for the plan)."""

    units: int
    name: str


# DescribeLimits' answer per client that read it: until when it holds, and the limits by
# dimension.
_limits_read: weakref.WeakKeyDictionary[Any, tuple[datetime, dict[str, _Limit]]] = (
    weakref.WeakKeyDictionary()
)


# Application Auto Scaling checks that a caller of RegisterScalableTarget and PutScalingPolicy
# may also manage the CloudWatch alarms of scaling policies, and refuses the call otherwise
# (ValidationException); it probes PutMetricAlarm and DeleteAlarms without parameters (no alarm
# ARN), so only a grant on `*` passes:
# https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_permission_validation.html
SCALING_ALARMS = Permission(
    actions=("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"),
    resources=("*",),
    why_wildcard="Application Auto Scaling probes these as the caller, without an alarm, before "
    "it registers a scalable target (its permission validation): only * passes",
)


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
                # Only DynamoDB's targets, not ECS services, Aurora replicas, ...
                conditions=(
                    ("StringEquals", "application-autoscaling:service-namespace", "dynamodb"),
                ),
                why_wildcard="scalable-target ARNs end in a random id, unknown at deploy time; "
                "a condition limits the grant to DynamoDB's scalable targets",
            ),
            Permission(
                actions=("application-autoscaling:DescribeScalableTargets",),
                resources=("*",),
                why_wildcard="DescribeScalableTargets supports no resource-level permissions",
            ),
            Permission(
                actions=("dynamodb:DescribeLimits",),
                resources=("*",),
                why_wildcard="DescribeLimits reads the account's capacity quotas in the region "
                "and supports no resource-level permissions",
            ),
            SCALING_ALARMS,
        ]

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> TableTarget | None:
        table = alarm.dimension("AWS/DynamoDB", "TableName")
        return TableTarget(table=table) if table else None

    def read(self) -> dict[str, Any]:
        # As the table will be: an update in progress still reports the capacity before it
        # (a revert's or an approval's "changed since" must see the other writer's change).
        return self._read_state(wait_active=True, max_wait=_PLAN_WAIT_SECONDS)

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in state.items() if key != "status"}

    def read_back(self) -> dict[str, Any]:
        # UpdateTable is asynchronous: wait (bounded) for ACTIVE before reading what was set.
        # A table that had no scalable target when planned has none now: no second lookup.
        return self._read_state(wait_active=True, autoscaling=self._had_autoscaling)

    def plan(self) -> Plan:
        before = self._read_state(wait_active=True, max_wait=_PLAN_WAIT_SECONDS)
        if before["status"] != "ACTIVE":
            waited = int(_PLAN_WAIT_SECONDS)
            return Plan(
                before=before,
                skip_reason="table_updating",
                note=f"table {self.target.table} is still {before['status']} after {waited} s: "
                "another change of it is in progress, and DynamoDB refuses a second one",
            )
        if before["billing_mode"] == "PAY_PER_REQUEST":
            return Plan(
                before=before,
                skip_reason="on_demand",
                note="table is on-demand (PAY_PER_REQUEST): there is no capacity to raise",
            )
        after = _copy_state(before)
        held: dict[str, str] = {}  # "unit:dimension": what held its increase back
        for dimension, limit in self._limits().items():
            held |= self._fit(before, after, dimension, limit)
        changes = _changes(before, after, held)
        notes = [f"{key.replace(':', ' ')} held by {why}" for key, why in held.items()]
        if not changes:
            return Plan(
                before=before,
                after=after,
                skip_reason="at_cap",
                note="every dimension is at its cap: " + "; ".join(notes),
            )
        return Plan(before=before, after=after, changes=changes, note="; ".join(notes))

    def _fit(
        self, before: dict[str, Any], after: dict[str, Any], dimension: str, limit: _Limit
    ) -> dict[str, str]:
        """Plan one dimension (read or write) of the table and each GSI into `after`: each
        times the factor, at most the policy's cap, and all of them together within `limit`.
        Returns what held each unit back ("unit:dimension": the cap or limit)."""
        factor, cap = self.params.factor, self.params.cap(dimension)
        policy = f"the policy's max_{dimension} {cap}"
        held: dict[str, str] = {}
        current = {unit: capacity[dimension] for unit, capacity in before["capacity"].items()}
        wanted = {}  # the capacity each unit would have, within the policy's cap
        for unit, now in current.items():
            key = f"{unit}:{dimension}"
            scaling = before["autoscaling"].get(key)
            if scaling is not None and not scaling["scale_out_suspended"]:
                wanted[unit] = now  # the scaler owns it: only its maximum is raised (below)
                continue
            wanted[unit] = scale_up(now, factor, cap)
            if scaling is not None:  # the new floor, under the new maximum
                wanted[unit] = max(now, min(wanted[unit], scale_up(scaling["max"], factor, cap)))
            if scale_up(now, factor, cap) < _scaled(now, factor):
                held[key] = policy
        granted = _share(current, wanted, limit.units)
        for unit, new in granted.items():
            key = f"{unit}:{dimension}"
            if new < wanted[unit]:
                held[key] = limit.name
            scaling = before["autoscaling"].get(key)
            if scaling is None:
                after["capacity"][unit][dimension] = new
                continue
            # As high as the scaler could go with the other units as planned.
            room = limit.units - (sum(granted.values()) - new)
            new_max = max(scaling["max"], min(scale_up(scaling["max"], factor, cap), room))
            if new_max < _scaled(scaling["max"], factor):
                held[key] = policy if scale_up(scaling["max"], factor, cap) <= room else limit.name
            after["autoscaling"][key]["max"] = new_max
            if scaling["scale_out_suspended"]:
                after["autoscaling"][key]["min"] = max(scaling["min"], min(new, new_max))
        return held

    def _limits(self) -> dict[str, _Limit]:
        """Per dimension, the most the table and its GSIs may hold together: DescribeLimits'
        per-table maximum, or the account's if that is lower (read once per _LIMITS_FOR)."""
        dynamodb = client("dynamodb")
        kept = _limits_read.get(dynamodb)
        if kept is not None and clock.now() < kept[0]:
            return kept[1]
        try:
            reported, keep = dynamodb.describe_limits(), True
        except ClientError as error:
            # Still throttled after botocore's retries (AWS: "You can expect throttling errors
            # if you call it more than once in a minute"): plan within the default per-table
            # quota, which UpdateTable checks anyway, and ask again next time.
            if error.response["Error"]["Code"] not in _THROTTLED:
                raise
            logger.warning("DescribeLimits throttled: planning with the default quota")
            reported, keep = {}, False
        limits = {}
        for dimension, field in _DIMENSIONS.items():
            table = int(reported.get(f"TableMax{field}", DYNAMODB_TABLE_QUOTA))
            account = int(reported.get(f"AccountMax{field}", table))
            if table <= account:
                name = f"the per-table maximum (TableMax{field} {table}, for the table and its"
                limits[dimension] = _Limit(table, f"{name} indexes together)")
            else:
                name = f"the account's maximum (AccountMax{field} {account}, for all tables"
                limits[dimension] = _Limit(account, f"{name} together)")
        if keep:
            _limits_read[dynamodb] = (clock.now() + _LIMITS_FOR, limits)
        return limits

    def apply(self, plan: Plan) -> None:
        self._write(plan.before, plan.after)

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        self._write(self._read_state(wait_active=True), before)

    def _write(self, current: dict[str, Any], wanted: dict[str, Any]) -> None:
        """Move the table from `current` to `wanted`: one UpdateTable for the capacity the
        table owns (finished before the scaler is touched, so the two never race), then the
        scalable targets' bounds (if one fails, those set before it are put back). Capacity a
        scaler owns is never written here."""
        table = self.target.table
        request: dict[str, Any] = {}
        index_updates = []
        requested: dict[str, dict[str, int]] = {}
        for unit, capacity in wanted["capacity"].items():
            now = current["capacity"].get(unit, {})
            target = {
                dimension: now.get(dimension, value)
                if f"{unit}:{dimension}" in current["autoscaling"]
                else value
                for dimension, value in capacity.items()
            }
            if target == now:
                continue
            requested[unit] = target
            throughput = {_DIMENSIONS[d]: v for d, v in sorted(target.items())}
            if unit == "table":
                request["ProvisionedThroughput"] = throughput
            else:
                index_updates.append(
                    {
                        "Update": {
                            "IndexName": unit.removeprefix("index/"),
                            "ProvisionedThroughput": throughput,
                        }
                    }
                )
        if index_updates:
            request["GlobalSecondaryIndexUpdates"] = index_updates
        if request:
            try:
                client("dynamodb").update_table(TableName=table, **request)
            except ClientError as error:
                if not self._landed(error, requested):
                    raise _refused(table, error) from error
        bounds_changed = [
            (key, bounds)
            for key, bounds in wanted["autoscaling"].items()
            if _bounds(current["autoscaling"].get(key)) != _bounds(bounds)
        ]
        if request and bounds_changed:
            self._read_state(wait_active=True)
        done: list[str] = []
        for key, bounds in bounds_changed:
            try:
                self._register(key, bounds)
            except (ClientError, BotoCoreError) as error:
                raise self._half_done(key, error, done, current, bool(request)) from error
            done.append(key)

    def _landed(self, error: ClientError, requested: dict[str, dict[str, int]]) -> bool:
        """Whether an UpdateTable that botocore retried went through on an earlier attempt
        whose answer was lost, the retry being refused as a repeat (the table is UPDATING, or
        the capacity "will not change"): once ACTIVE, the table has the capacity requested."""
        if not error.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return False
        capacity = self._read_state(wait_active=True, autoscaling=False)["capacity"]
        return all(capacity.get(unit) == wanted for unit, wanted in requested.items())

    def _register(self, key: str, bounds: dict[str, Any]) -> None:
        unit, dimension = key.rsplit(":", 1)
        resource_id, scalable_dimension = _scalable(self.target.table, unit, dimension)
        client("application-autoscaling").register_scalable_target(
            ServiceNamespace="dynamodb",
            ResourceId=resource_id,
            ScalableDimension=scalable_dimension,
            MinCapacity=bounds["min"],
            MaxCapacity=bounds["max"],
        )

    def _half_done(
        self,
        key: str,
        error: Exception,
        done: list[str],
        current: dict[str, Any],
        table_updated: bool,
    ) -> ActionError:
        """A scalable target could not be set after others were: put those back to their
        bounds before (best effort), so that a failed change leaves the scaler as it was and a
        retry starts from there; the error says what, if anything, stays changed."""
        if isinstance(error, ClientError):
            failure = ActionError.from_client_error(f"RegisterScalableTarget {key}", error)
        else:
            failure = ActionError(f"RegisterScalableTarget {key} failed: {error}")
        left = []
        for earlier in reversed(done):
            before = current["autoscaling"].get(earlier)
            if before is None:  # no scalable target before: no bounds to put back
                left.append(earlier)
                continue
            try:
                self._register(earlier, before)
            except (ClientError, BotoCoreError):
                logger.exception("could not put back the bounds of %s", earlier)
                left.append(earlier)
        notes = [str(failure)]
        if done and not left:
            notes.append(f"put back the bounds set before it ({', '.join(done)})")
        if left:
            notes.append(f"still changed: the bounds of {', '.join(left)}")
        if table_updated:
            notes.append("still changed: the UpdateTable before it")
        return ActionError("; ".join(notes))

    _had_autoscaling = True  # until a read shows otherwise

    _waited = 0.0  # seconds this action has waited for ACTIVE (the budget's use)

    def _read_state(
        self,
        wait_active: bool = False,
        autoscaling: bool = True,
        max_wait: float = _WAIT_BUDGET_SECONDS,
    ) -> dict[str, Any]:
        """Capacity per table/GSI and dimension, billing mode, status and autoscaling bounds;
        `wait_active`: for ACTIVE, at most `max_wait` and what is left of the action's budget."""
        table = self.target.table
        waited = 0.0
        while True:
            try:
                description = client("dynamodb").describe_table(TableName=table)["Table"]
            except ClientError as error:
                if error.response["Error"]["Code"] == "ResourceNotFoundException":
                    raise TargetNotFound(f"table {table} does not exist") from error
                raise
            left = min(max_wait - waited, _WAIT_BUDGET_SECONDS - self._waited)
            if description["TableStatus"] == "ACTIVE" or not wait_active or left <= 0:
                break
            pause = min(_ACTIVE_POLL_SECONDS, left)
            clock.sleep(pause)
            waited += pause
            self._waited += pause
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
        if billing != "PAY_PER_REQUEST" and autoscaling:
            state["autoscaling"] = self._read_autoscaling(list(capacity))
            self._had_autoscaling = bool(state["autoscaling"])
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
                "scale_out_suspended": bool(
                    scalable.get("SuspendedState", {}).get("DynamicScalingOutSuspended", False)
                ),
            }
        return bounds


def _scaled(current: int, factor: float) -> int:
    """`current` times `factor`, uncapped: what a cap holds back from."""
    return scale_up(current, factor, sys.maxsize)


def _share(current: dict[str, int], wanted: dict[str, int], limit: int) -> dict[str, int]:
    """`wanted`; or, if the units would then hold more than `limit` together, each unit's
    increase cut by the same fraction (the units with the largest remainders get one more), so
    that together they hold `limit`. Never less than `current`."""
    increases = {unit: wanted[unit] - now for unit, now in current.items()}
    room, total = limit - sum(current.values()), sum(increases.values())
    if total <= room:
        return dict(wanted)
    if room <= 0:
        return dict(current)
    granted = {unit: increase * room // total for unit, increase in increases.items()}
    left = room - sum(granted.values())
    for unit in sorted(current, key=lambda u: -(increases[u] * room % total))[:left]:
        granted[unit] += 1
    return {unit: now + granted[unit] for unit, now in current.items()}


def _changes(before: dict[str, Any], after: dict[str, Any], held: dict[str, str]) -> list[str]:
    """The plan in words, unit by unit: what changes, and what held a change back."""
    changes = []
    for unit, capacity in before["capacity"].items():
        for dimension, old in capacity.items():
            key = f"{unit}:{dimension}"
            why = f" (held by {held[key]})" if key in held else ""
            new = after["capacity"][unit][dimension]
            if new != old:
                changes.append(f"{unit} {dimension} capacity {old} -> {new}{why}")
            scaling = before["autoscaling"].get(key)
            for bound in ("max", "min") if scaling is not None else ():
                new = after["autoscaling"][key][bound]
                if new != scaling[bound]:
                    changes.append(
                        f"{unit} {dimension} autoscaling {bound} {scaling[bound]} -> {new}"
                        + (why if bound == "max" else "")
                    )
    return changes


def _refused(table: str, error: ClientError) -> ActionError:
    """UpdateTable's refusal as an ActionError; a capacity limit's also says what it means."""
    failure = ActionError.from_client_error(f"UpdateTable {table}", error)
    details = error.response.get("Error", {})
    if details.get("Code") == "LimitExceededException":
        for text, meaning in _LIMIT_REFUSALS.items():
            if text in str(details.get("Message", "")):
                return ActionError(f"{failure} ({meaning})")
    return failure


def _bounds(scaling: dict[str, Any] | None) -> tuple[int, int] | None:
    return None if scaling is None else (scaling["min"], scaling["max"])


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
