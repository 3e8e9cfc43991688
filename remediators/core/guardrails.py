"""The guardrails' own state: the kill switch, and one item per resource in the guardrail table
holding its lock, its recent changes and the events that acted on it.

Duplicate deliveries are stopped first, by Powertools idempotency in the handler; hard caps are
part of each action's plan. The rest is here, and strongly consistent: taking a resource's lock
and checking its cooldown and circuit breaker is one conditional UpdateItem (which returns the
item as it was, whether the condition held or not), and recording the outcome with the change
and releasing the lock is one transaction with the audit record. Nothing here reads the audit
table's indexes, which DynamoDB updates eventually ("All reads from GSIs and streams are
eventually consistent", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html):
an event right after another's change would miss it there and act again inside the cooldown.

The item of a resource:
- `lock_owner`, `lock_expires`: who holds the lock until when (a crashed holder frees it then).
- `last_applied`: per policy, when it last changed the resource (cooldown).
- `changes`: the changes in the circuit breaker's window, newest first (circuit breaker).
- `events`: the events that applied, asked for approval, started a flow or failed on the
  resource within `EVENT_MEMORY`, so that a redelivery finds its earlier record without a read
  of the audit table for every event.
- `flow`: the last flow (restore) started on it; `settled` once its ending (recorded by the
  flow itself) has joined the changes.
- `seeded`: the state was carried over from the audit trail (a resource first seen by a
  version before this item: read once, then kept here).
The item's time to live (`expires_at`) is refreshed by every write, EVENT_MEMORY ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.audit import EXPIRED_REASON, AuditRecord, AuditStore, Outcome, iso_time
from remediators.core.aws import client

__all__ = [
    "CIRCUIT_WINDOW",
    "ENABLED_VALUE",
    "EVENT_MEMORY",
    "LOCK_TTL",
    "STATE_KEY",
    "STATE_TTL_ATTRIBUTE",
    "Claim",
    "Gate",
    "GuardrailState",
    "KillSwitch",
    "ResourceState",
]

logger = logging.getLogger(__name__)

# The kill-switch parameter holds this value while actions are allowed; anything else stops them.
ENABLED_VALUE = "enabled"
# The guardrail table's key and time-to-live attributes (the stack builds the table from these;
# the key keeps the name of the locks it first held, so an upgrade keeps the table).
STATE_KEY = "lock_key"
STATE_TTL_ATTRIBUTE = "expires_at"
CIRCUIT_WINDOW = timedelta(days=1)
# Longer than the remediator can run (its timeout, stacks/names.py), so a live holder never
# loses the lock; a crashed one frees it at the expiry.
LOCK_TTL = timedelta(minutes=5)
# How long an event can come back: a dead letter waits 14 days (stacks/names.py) before an
# operator replays it, after Lambda's 6 hours and EventBridge's 24 hours of retries.
EVENT_MEMORY = timedelta(days=16)
# The outcomes a redelivery must find (its change was made, or is waiting, or may have been).
_REMEMBERED = (Outcome.APPLIED, Outcome.PENDING, Outcome.FAILED)


class KillSwitch:
    """One SSM parameter that turns every automatic action off."""

    def __init__(self, parameter: str) -> None:
        self.parameter = parameter

    def enabled(self) -> bool:
        """Whether actions may run: read every time, so that flipping it takes effect at once.

        A missing parameter counts as off: when in doubt, do not act. Any other error is
        raised, so the event fails and is retried instead of being skipped.
        """
        try:
            value = client("ssm").get_parameter(Name=self.parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return False
            raise  # throttled or denied: fail the event so that it is retried, not dropped
        return str(value).strip().lower() == ENABLED_VALUE


@dataclass(frozen=True)
class Gate:
    """What a policy's change must pass besides the lock: its cooldown on the resource, and at
    most `max_changes` changes by any policy in the circuit breaker's window."""

    policy: str
    cooldown: timedelta
    max_changes: int


@dataclass(frozen=True)
class Change:
    """One change a policy made to the resource, when it was recorded."""

    at: str  # fixed-width UTC (audit.iso_time): compares as a string, in DynamoDB too
    policy: str
    event: str


@dataclass(frozen=True)
class ResourceState:
    """The guardrail item of one resource, as read."""

    lock_owner: str | None = None
    lock_expires: str | None = None
    last_applied: dict[str, str] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()  # newest first
    events: dict[str, str] = field(default_factory=dict)  # event id -> when recorded
    flow: dict[str, str] | None = None  # {"event", "action", "at"[, "settled"]}
    seeded: bool = False

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ResourceState:
        def text(name: str) -> str | None:
            return item[name]["S"] if name in item else None

        def strings(name: str) -> dict[str, str]:
            return {k: v["S"] for k, v in item.get(name, {}).get("M", {}).items()}

        changes = tuple(
            Change(**{k: v["S"] for k, v in change["M"].items()})
            for change in item.get("changes", {}).get("L", [])
        )
        return cls(
            lock_owner=text("lock_owner"),
            lock_expires=text("lock_expires"),
            last_applied=strings("last_applied"),
            changes=changes,
            events=strings("events"),
            flow=strings("flow") or None,
            seeded=item.get("seeded", {}).get("BOOL", False),
        )

    def locked_by_another(self, owner: str, now: datetime) -> bool:
        """Whether someone else holds the lock now (the same owner may take it again: a retry
        of an attempt that died holding it)."""
        return (
            self.lock_owner is not None
            and self.lock_owner != owner
            and self.lock_expires is not None
            and self.lock_expires >= iso_time(now)
        )

    def knows(self, event_id: str) -> bool:
        """Whether `event_id` has a record to read before it may act: it applied, waits,
        failed on this resource, or died holding the lock."""
        return event_id in self.events or self.lock_owner == event_id

    def blocked(self, gate: Gate, now: datetime, resource: str) -> tuple[str, str | None] | None:
        """Cooldown and circuit breaker: (reason, note) if `gate`'s policy may not change
        `resource` (this state's) now. The acquiring write's condition says the same in
        DynamoDB's terms."""
        last = self.last_applied.get(gate.policy)
        if last is not None and last >= iso_time(now - gate.cooldown):
            return "cooldown", None
        window_start = iso_time(now - CIRCUIT_WINDOW)
        in_window = [change for change in self.changes if change.at >= window_start]
        if len(in_window) >= gate.max_changes:
            return (
                "circuit_open",
                f"{len(in_window)} changes to {resource} in 24 h (limit {gate.max_changes})",
            )
        return None

    def merged(self, other: ResourceState) -> ResourceState:
        """This state with what `other` (carried over from the audit trail) adds."""
        last = dict(other.last_applied)
        for policy, at in self.last_applied.items():
            last[policy] = max(at, last.get(policy, at))
        seen = {change.event for change in self.changes}
        changes = sorted(
            [*self.changes, *(c for c in other.changes if c.event not in seen)],
            key=lambda change: change.at,
            reverse=True,
        )
        flows = [flow for flow in (self.flow, other.flow) if flow]
        return replace(
            self,
            last_applied=last,
            changes=tuple(changes),
            events={**other.events, **self.events},
            flow=max(flows, key=lambda flow: flow["at"]) if flows else None,
            seeded=True,
        )


def _condition(gate: Gate | None) -> tuple[str, dict[str, str]]:
    """The acquiring write's condition and its attribute names: the lock is free (or expired,
    or the owner's own) and, for a seeded item, `gate` lets the change through (the same test
    as `ResourceState.blocked`: the cooldown's start is after the policy's last change, and
    the `max_changes`-th newest change is older than the window). Document paths with a list
    index are valid operands: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.Attributes.html"""
    lock = "(attribute_not_exists(lock_owner) OR lock_expires < :now OR lock_owner = :owner)"
    if gate is None:
        return lock, {}
    nth = f"changes[{gate.max_changes - 1}]"
    passes = (
        "(attribute_not_exists(last_applied.#policy) OR last_applied.#policy < :cool_from) AND "
        f"(attribute_not_exists({nth}) OR {nth}.#at < :window_from)"
    )
    return (
        f"{lock} AND (attribute_not_exists(seeded) OR ({passes}))",
        {"#policy": gate.policy, "#at": "at"},
    )


@dataclass
class Claim:
    """An attempt on a resource's lock: `held` if taken; `state` as the item was before it;
    `stop` the guardrail that refused it (`locked`, `cooldown`, `circuit_open`) and its note.
    A held claim is closed by `finish` (with the record of the outcome) or `release`."""

    store: GuardrailState
    resource: str
    owner: str
    held: bool
    state: ResourceState
    stop: str | None = None
    note: str | None = None
    # The flow (`state.flow`) still running on the resource, if any.
    running_flow: dict[str, str] | None = None
    # What the outcome adds to the state, applied when it is recorded.
    _change_by: str | None = None
    _remember: bool = False
    _flow: str | None = None

    def record_change(self, policy: str) -> None:
        """The outcome is a change by `policy` (cooldown and circuit breaker count it)."""
        self._change_by, self._remember = policy, True

    def remember_event(self) -> None:
        """The outcome is one a redelivery must find (pending or failed)."""
        self._remember = True

    def record_flow(self, action: str) -> None:
        """The outcome is a flow started for `action` (one at a time per resource)."""
        self._flow, self._remember = action, True

    def finish(self, record: AuditRecord) -> None:
        """Write `record`: with a held lock, in one transaction with the state it leaves and
        the lock's release; without, alone."""
        if not self.held:
            self.store.audit.put(record)
            return
        self.store.close(self, record)
        self.held = False

    def release(self) -> None:
        """Release a held lock without an outcome to record (keeping a carried-over state)."""
        if self.held:
            self.store.close(self, None)
            self.held = False

    def next_state(self, at: datetime) -> ResourceState:
        """The state after this claim's outcome, recorded `at`, with what has aged out of the
        windows dropped."""
        state, moment = self.state, iso_time(at)
        if self._change_by is not None:
            state = replace(
                state,
                last_applied={**state.last_applied, self._change_by: moment},
                changes=(Change(moment, self._change_by, self.owner), *state.changes),
            )
        if self._remember:
            state = replace(state, events={**state.events, self.owner: moment})
        if self._flow is not None:
            state = replace(state, flow={"event": self.owner, "action": self._flow, "at": moment})
        window_start, memory_start = iso_time(at - CIRCUIT_WINDOW), iso_time(at - EVENT_MEMORY)
        return replace(
            state,
            # The cooldown may be longer than the window: a policy's last change stays.
            last_applied={p: t for p, t in state.last_applied.items() if t >= memory_start},
            changes=tuple(change for change in state.changes if change.at >= window_start),
            events={e: t for e, t in state.events.items() if t >= memory_start},
            seeded=True,
        )


class GuardrailState:
    """The guardrail table: per-resource locks, cooldown, circuit breaker and remembered
    events. `audit` is where a resource's earlier changes are read once, for a resource whose
    item predates this state (see `ResourceState.seeded`)."""

    def __init__(self, table_name: str, audit: AuditStore, ttl: timedelta = LOCK_TTL) -> None:
        self.table_name = table_name
        self.audit = audit
        self.ttl = ttl

    def claim(self, resource: str, owner: str, gate: Gate | None = None) -> Claim:
        """Try to take the lock on `resource` for `owner`, and with `gate` check the policy's
        cooldown and the circuit breaker in the same conditional write."""
        now = clock.now()
        condition, names = _condition(gate)
        values = {
            ":owner": {"S": owner},
            ":now": {"S": iso_time(now)},
            ":expires": {"S": iso_time(now + self.ttl)},
            ":ttl": {"N": str(int((now + EVENT_MEMORY).timestamp()))},
        }
        if gate is not None:
            values[":cool_from"] = {"S": iso_time(now - gate.cooldown)}
            values[":window_from"] = {"S": iso_time(now - CIRCUIT_WINDOW)}
        try:
            item = (
                client("dynamodb")
                .update_item(
                    TableName=self.table_name,
                    Key={STATE_KEY: {"S": resource}},
                    UpdateExpression="SET lock_owner = :owner, lock_expires = :expires, "
                    f"{STATE_TTL_ATTRIBUTE} = :ttl",
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ReturnValues="ALL_OLD",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **({"ExpressionAttributeNames": names} if names else {}),
                )
                .get("Attributes", {})
            )
            held = True
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item, held = error.response.get("Item", {}), False
        claim = Claim(self, resource, owner, held, ResourceState.from_item(item))
        if not held and claim.state.locked_by_another(owner, now):
            claim.stop = "locked"
            return claim
        if held and gate is not None:
            if not claim.state.seeded:
                claim.state = claim.state.merged(self.carried_over(resource, now))
            self._settle_flow(claim)
        blocked = claim.state.blocked(gate, now, resource) if gate is not None else None
        if blocked is not None:
            claim.stop, claim.note = blocked
        elif not held:  # the condition and `blocked` disagree: never act on a doubt
            raise RuntimeError(f"the guardrail state of {resource} refused {owner} for no reason")
        return claim

    def _settle_flow(self, claim: Claim) -> None:
        """A flow (restore) records its own ending, without the lock: once it has, its change
        joins the resource's changes (cooldown, circuit breaker), read from its record once."""
        flow = claim.state.flow
        if flow is None or flow.get("settled"):
            return
        record = self.audit.get(flow["event"])
        if record is not None and record.outcome is Outcome.PENDING:
            claim.running_flow = flow
            return
        state = replace(claim.state, flow=flow | {"settled": "yes"})
        if record is not None and record.outcome is Outcome.APPLIED and record.policy:
            at = iso_time(record.recorded_at)
            state = replace(
                state,
                last_applied={
                    **state.last_applied,
                    record.policy: max(at, state.last_applied.get(record.policy, at)),
                },
                changes=tuple(
                    sorted(
                        [*state.changes, Change(at, record.policy, record.event_id)],
                        key=lambda change: change.at,
                        reverse=True,
                    )
                ),
            )
        claim.state = state

    @contextmanager
    def hold(self, resource: str, owner: str) -> Iterator[bool]:
        """Yield True while holding the lock on `resource`, False if another owner has it
        (for changes that meet no cooldown: reverts, expiries)."""
        taken = self.claim(resource, owner)
        try:
            yield taken.held
        finally:
            try:
                taken.release()
            except ClientError as error:
                # The expiry frees it; failing here would fail (and retry) what may have acted.
                logger.warning("could not release the lock on %s: %s", resource, error)

    def read(self, resource: str) -> ResourceState:
        """The state of `resource` now, strongly consistent, without taking anything."""
        item = (
            client("dynamodb")
            .get_item(
                TableName=self.table_name, Key={STATE_KEY: {"S": resource}}, ConsistentRead=True
            )
            .get("Item", {})
        )
        state = ResourceState.from_item(item)
        return state if state.seeded else state.merged(self.carried_over(resource, clock.now()))

    def carried_over(self, resource: str, now: datetime) -> ResourceState:
        """What the audit trail says of `resource` within EVENT_MEMORY: for an item written
        before this state existed (an upgrade) or gone with its time to live. The trail's
        index may lag a second behind its writes; the changes it holds from before this state
        are older than that."""
        records = self.audit.remembered_since(resource, now - EVENT_MEMORY)
        changes = [
            Change(iso_time(r.recorded_at), str(r.policy), r.event_id)
            for r in records
            if r.outcome is Outcome.APPLIED
            and r.policy
            and not r.reverts
            and r.reason != EXPIRED_REASON
        ]
        last: dict[str, str] = {}
        for change in changes:
            last[change.policy] = max(change.at, last.get(change.policy, change.at))
        flows = [
            r for r in records if r.outcome is Outcome.PENDING and (r.approval or {}).get("flow")
        ]
        flow = (
            {
                "event": flows[0].event_id,
                "action": str(flows[0].action),
                "at": iso_time(flows[0].recorded_at),
            }
            if flows
            else None
        )
        return ResourceState(
            last_applied=last,
            changes=tuple(sorted(changes, key=lambda c: c.at, reverse=True)),
            events={
                r.event_id: iso_time(r.recorded_at) for r in records if r.outcome in _REMEMBERED
            },
            flow=flow,
            seeded=True,
        )

    def close(self, claim: Claim, record: AuditRecord | None) -> None:
        """Release `claim`'s lock, leaving the state its outcome makes; with `record`, in one
        transaction with the audit record (both or neither). A lock lost meanwhile (it cannot
        be while its holder runs: LOCK_TTL is longer than the function may) still gets its
        record written."""
        at = record.recorded_at if record is not None else clock.now()
        state = claim.next_state(at)
        update = {
            "TableName": self.table_name,
            "Key": {STATE_KEY: {"S": claim.resource}},
            "UpdateExpression": "SET last_applied = :last, changes = :changes, events = :events, "
            f"seeded = :seeded, {STATE_TTL_ATTRIBUTE} = :ttl"
            + (", flow = :flow" if state.flow else "")
            + " REMOVE lock_owner, lock_expires",
            "ConditionExpression": "lock_owner = :owner",
            "ExpressionAttributeValues": {
                ":owner": {"S": claim.owner},
                ":last": {"M": {p: {"S": t} for p, t in state.last_applied.items()}},
                ":changes": {
                    "L": [
                        {
                            "M": {
                                "at": {"S": c.at},
                                "policy": {"S": c.policy},
                                "event": {"S": c.event},
                            }
                        }
                        for c in state.changes
                    ]
                },
                ":events": {"M": {e: {"S": t} for e, t in state.events.items()}},
                ":seeded": {"BOOL": True},
                ":ttl": {"N": str(int((at + EVENT_MEMORY).timestamp()))},
            }
            | (
                {":flow": {"M": {k: {"S": v} for k, v in state.flow.items()}}} if state.flow else {}
            ),
        }
        dynamodb = client("dynamodb")
        if record is None:
            try:
                dynamodb.update_item(**update)
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                logger.warning("the lock on %s was lost by %s", claim.resource, claim.owner)
            return
        try:
            dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.audit.table_name,
                            "Item": self.audit.to_item(record),
                        }
                    },
                    {"Update": update},
                ]
            )
            return
        except ClientError as error:
            lost = _lost_lock(error)
            logger.warning(
                "recording %s with the state of %s in one transaction failed (%s): %s",
                claim.owner,
                claim.resource,
                "the lock was lost" if lost else "writing them one by one",
                error,
            )
        # Never lose the record (the change may be made): alone, then the state if it can.
        self.audit.put(record)
        if not lost:
            try:
                dynamodb.update_item(**update)
            except ClientError as error:  # the lock's expiry frees the resource
                logger.warning("could not keep the state of %s: %s", claim.resource, error)


def _lost_lock(error: ClientError) -> bool:
    """Whether a cancelled transaction failed on the state's condition (the lock), not on
    the audit record or capacity."""
    reasons = error.response.get("CancellationReasons", [])
    return len(reasons) == 2 and reasons[1].get("Code") == "ConditionalCheckFailed"
