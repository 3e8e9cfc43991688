"""The remediation of one alarm event: match, guard, plan, act, read back, record, notify."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.errors import TargetNotFound
from remediators.core.events import AlarmEvent, AlarmStateValue
from remediators.core.notify import Notifier
from remediators.core.policy import Policy, PolicyFile
from remediators.core.registry import Target

__all__ = ["Remediator"]


class Remediator:
    """Turns alarm events into at most one action each, and always into one audit record."""

    def __init__(self, policies: PolicyFile, audit: AuditStore, notifier: Notifier) -> None:
        self.policies = policies
        self.audit = audit
        self.notifier = notifier

    def handle(self, event: AlarmEvent) -> AuditRecord:  # noqa: PLR0911 (a return per outcome)
        """Remediate one event. A failure is recorded and notified, then re-raised so that
        Lambda retries the event and finally sends it to the dead-letter queue."""
        started = clock.now()
        alarm = event.detail
        base: dict[str, Any] = {
            "event_id": event.id,
            "alarm": alarm.alarm_name,
            "alarm_state": alarm.state.value.value,
            "started_at": started,
        }
        if alarm.state.value is not AlarmStateValue.ALARM:
            return self._finish(base, Outcome.SKIPPED, "not_alarm")
        policy = self.policies.policy_for_alarm(alarm.alarm_name)
        if policy is None:
            return self._finish(base, Outcome.SKIPPED, "no_policy")
        base |= {"policy": policy.name, "action": policy.action}
        action_class = policy.action_class
        target: Target | None = policy.target or action_class.target_from_alarm(alarm)
        if target is None:
            return self._finish(base, Outcome.SKIPPED, "no_target", policy)
        base["target"] = target.resource_key

        cooldown = self.policies.cooldown(policy)
        if cooldown and self.audit.last_applied(
            target.resource_key, policy.name, started - cooldown
        ):
            return self._finish(base, Outcome.SKIPPED, "cooldown", policy)

        action = action_class(target, policy.params)
        try:
            plan = action.plan()
            base |= {"before": plan.before, "planned": plan.after, "changes": plan.changes}
            if plan.skip_reason:
                return self._finish(base, Outcome.SKIPPED, plan.skip_reason, policy)
            if self.policies.dry_run(policy):
                base["dry_run"] = True
                return self._finish(base, Outcome.SKIPPED, "dry_run", policy, notify=True)
            base["after"] = action.apply(plan)
        except TargetNotFound as error:
            return self._finish(
                base | {"error": str(error)}, Outcome.SKIPPED, "target_not_found", policy
            )
        except Exception as error:
            self._finish(
                base | {"error": f"{type(error).__name__}: {error}"},
                Outcome.FAILED,
                None,
                policy,
                notify=True,
            )
            raise
        return self._finish(base, Outcome.APPLIED, None, policy, notify=True)

    def record_invalid(self, raw_event: Any, error: str) -> AuditRecord:
        """Record an event that does not parse as an alarm state change; nothing acts."""
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

    def _finish(
        self,
        fields: dict[str, Any],
        outcome: Outcome,
        reason: str | None,
        policy: Policy | None = None,
        notify: bool = False,
    ) -> AuditRecord:
        record = AuditRecord(outcome=outcome, reason=reason, recorded_at=clock.now(), **fields)
        self.audit.put(record)
        if notify and policy is not None:
            self.notifier.notify(record, self.policies.channel(policy))
        return record
