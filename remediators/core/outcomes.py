"""How every path ends: one audit record per event, written first, then told to the policy's
channel; the reasons that need a person (escalations) in one place.

The alarm pipeline, the approval flow, the flows, the expiry sweep and verification all end
through a `Recorder`, so that a record is written and notified the same way wherever it comes
from.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.notify import Notifier, publish
from remediators.core.policy import Policies, Policy

if TYPE_CHECKING:
    from remediators.core.guardrails import Claim

__all__ = ["ESCALATE", "Recorder", "as_duplicate", "build_record"]

# Reasons that need a person: notified as escalations.
ESCALATE = frozenset(
    {
        "alias_split",
        "at_cap",
        "circuit_open",
        "changed_since_approval",
        "inconclusive",
        "latest_differs",
        "no_reservation",
        "no_backup",
        "published_version",
        "snapstart",
        "table_updating",
    }
)


def build_record(fields: dict[str, Any], outcome: Outcome, reason: str | None) -> AuditRecord:
    """The record of `fields`, stamped now (written by nobody yet)."""
    return AuditRecord(outcome=outcome, reason=reason, recorded_at=clock.now(), **fields)


def as_duplicate(previous: AuditRecord) -> AuditRecord:
    """What a repeated event returns: its first record, as a `duplicate` skip."""
    return previous.model_copy(update={"outcome": Outcome.SKIPPED, "reason": "duplicate"})


class Recorder:
    """Writes the audit record of an ending and notifies the policy's channel."""

    def __init__(self, policies: Policies, audit: AuditStore, notifier: Notifier) -> None:
        self.policies = policies
        self.audit = audit
        self.notifier = notifier

    def finish(
        self,
        fields: dict[str, Any],
        outcome: Outcome,
        reason: str | None,
        policy: Policy | None = None,
        *,
        notify: bool = False,
        escalated: bool = False,
        claim: Claim | None = None,
    ) -> AuditRecord:
        """Record the ending; tell the policy's channel when `notify` (and there is a policy).
        With `claim`, the record is written with the guardrail state it leaves, releasing the
        resource's lock."""
        record = build_record(fields | {"escalated": escalated}, outcome, reason)
        channel = self.policies.channel(policy) if notify and policy is not None else None
        publish(record, self.audit, self.notifier, channel, claim.finish if claim else None)
        return record

    def failed(
        self,
        fields: dict[str, Any],
        policy: Policy | None,
        error: Exception,
        *,
        notify: bool,
        reason: str | None = None,
        claim: Claim | None = None,
    ) -> AuditRecord:
        """Record (and escalate) a failure; the caller re-raises it for a retry, or moves on."""
        fields = fields | {"error": f"{type(error).__name__}: {error}"}
        return self.finish(
            fields, Outcome.FAILED, reason, policy, notify=notify, escalated=True, claim=claim
        )

    def invalid(self, raw_event: Any, error: str) -> AuditRecord:
        """Record an event that does not parse as what its handler takes; nothing acts. An
        event without an id gets one derived from its content (the same event, the same id)."""
        event_id = raw_event.get("id") if isinstance(raw_event, dict) else None
        if not isinstance(event_id, str) or not event_id:
            digest = hashlib.sha256(json.dumps(raw_event, sort_keys=True, default=str).encode())
            event_id = f"invalid-{digest.hexdigest()[:24]}"
        now = clock.now()
        record = AuditRecord(
            event_id=event_id,
            outcome=Outcome.INVALID,
            reason="invalid_event",
            error=error,
            started_at=now,
            recorded_at=now,
        )
        self.audit.put(record)
        return record
