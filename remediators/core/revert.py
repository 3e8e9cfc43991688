"""Undo a recorded change through the action's `revert`: restore its before-state (or, for an
action whose resource has other writers, such as a WAF IP set, take back only its own part).

A revert is guarded and audited like any change: it takes the resource's lock, refuses when the
resource changed since the action (unless forced), and is itself an audit record (`applied`,
reason `revert`) — or, when refused, a `skipped` record saying why.
"""

from __future__ import annotations

import uuid
from typing import Any

from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.errors import AutoremediateError
from remediators.core.guardrails import GuardrailState
from remediators.core.notify import Notifier
from remediators.core.registry import get_action

__all__ = ["RevertRefused", "describe_changes", "revert"]


class RevertRefused(AutoremediateError):
    """A revert was refused (unknown or unrevertable record, resource changed, locked)."""


def revert(
    event_id: str,
    *,
    audit: AuditStore,
    guardrails: GuardrailState,
    notifier: Notifier,
    force: bool = False,
    actor: str = "operator",
) -> AuditRecord:
    """Restore the before-state recorded by applied event `event_id`; returns the new record."""
    original = audit.get(event_id)
    if original is None:
        raise RevertRefused(f"no audit record for {event_id}")
    if original.outcome is not Outcome.APPLIED or original.before is None:
        raise RevertRefused(f"{event_id} changed nothing ({original.outcome.value}); no revert")
    if original.action is None or original.target_spec is None or original.after is None:
        raise RevertRefused(f"{event_id} does not record enough to rebuild its action")
    action_class = get_action(original.action)
    action = action_class(
        action_class.target_model.model_validate(original.target_spec),
        action_class.params_model(),
    )
    revert_id = f"revert-{uuid.uuid4()}"
    base: dict[str, Any] = {
        "event_id": revert_id,
        "policy": original.policy,
        "action": original.action,
        "alarm": original.alarm,
        "target": original.target,
        "target_spec": original.target_spec,
        "reverts": event_id,
        "started_at": clock.now(),
    }
    with guardrails.hold(str(original.target), owner=revert_id) as held:
        if not held:
            raise RevertRefused(f"{original.target} is locked by a running action; retry")
        current = action.read()
        base["before"] = current
        if action.comparable(current) != action.comparable(original.after) and not force:
            drift = describe_changes(action.comparable(original.after), action.comparable(current))
            refused = AuditRecord(
                outcome=Outcome.SKIPPED,
                reason="changed_since",
                error=f"{original.target} changed since {event_id}: {'; '.join(drift)}",
                recorded_at=clock.now(),
                **base,
            )
            audit.put(refused)
            raise RevertRefused(f"{refused.error} (use --force to revert anyway)")
        action.revert(original.before, original.after)
        after = action.read_back()
        record = AuditRecord(
            outcome=Outcome.APPLIED,
            reason="revert",
            planned=original.before,
            after=after,
            changes=[
                f"by {actor}{' (forced)' if force else ''}",
                *describe_changes(current, after),
            ],
            recorded_at=clock.now(),
            **base,
        )
        audit.put(record)
    notifier.notify_all(record)
    return record


def describe_changes(before: Any, after: Any, path: str = "") -> list[str]:
    """`a.b 5 -> 10` for every leaf that differs between two nested states."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes = []
        for key in sorted(set(before) | set(after), key=str):
            changes += describe_changes(
                before.get(key), after.get(key), f"{path}.{key}" if path else str(key)
            )
        return changes
    return [] if before == after else [f"{path} {before} -> {after}"]
