"""Changes whose time runs out (`Action.expires`: blocks past `block_for`): the expiry
schedule's run undoes what is due, each policy's target under its lock, and records it."""

from __future__ import annotations

from typing import Any

from remediators.core import clock
from remediators.core.audit import EXPIRED_REASON, AuditRecord, Outcome
from remediators.core.guardrails import GuardrailState
from remediators.core.outcomes import Recorder

__all__ = ["SWEEP_DETAIL_TYPE", "expire_due"]

# The detail-type of the events EventBridge's schedule rules send (the sweep's).
SWEEP_DETAIL_TYPE = "Scheduled Event"


def expire_due(recorder: Recorder, guardrails: GuardrailState, run_id: str) -> list[AuditRecord]:
    """Undo the lapsed changes of every policy whose action's changes expire, each under its
    resource's lock (a locked resource waits for the next run); one record per undoing."""
    records = []
    now = clock.now()
    for policy in recorder.policies.policies:
        if not policy.action_class.expires or policy.target is None:
            continue
        action = policy.action_class(policy.target, policy.params)
        base: dict[str, Any] = {
            "event_id": f"{run_id}-{policy.name}",
            "policy": policy.name,
            "action": policy.action,
            "target": policy.target.resource_key,
            "target_spec": policy.target.model_dump(mode="json"),
            "started_at": now,
        }
        try:
            with guardrails.hold(base["target"], owner=base["event_id"]) as held:
                undone = action.expire(now) if held else []  # locked: the next run
        except Exception as error:
            records.append(recorder.failed(base, policy, error, notify=True, reason=EXPIRED_REASON))
            continue
        if undone:
            changes = [f"{item}: its time ran out, undone" for item in undone]
            fields = base | {"changes": changes, "after": {"undone": undone}}
            records.append(recorder.finish(fields, Outcome.APPLIED, EXPIRED_REASON, policy))
    return records
