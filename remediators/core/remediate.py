"""The remediation of one alarm event: match, guard, plan, act, read back, record, notify.

Guardrails, in the order an event meets them (duplicates are stopped earlier, by the
handler's idempotency on the event id, and later, by the records a redelivery finds):
1. kill switch (`disabled`)  2. dry run (`dry_run`: plan only)  3. per-resource lock (`locked`)
4. cooldown per policy and resource (`cooldown`)  5. circuit breaker: at most
`max_actions_per_day` changes to a resource in any 24 hours (`circuit_open`, escalated)
6. hard caps, in the action's plan (`at_cap`, escalated, when nothing is left to change).
3-5 are one conditional write to the resource's guardrail item (`guardrails`), and the outcome
is recorded with the change and the lock's release in one transaction.
A change that needs approval is then handed to the approval flow (`pending`, see
`approved_changes`, whose tasks come back here to apply); an action of many steps
(`Action.flow`: a restore) to its own state machine (`pending`, `flow_started`, see `flows`).
An applied change is read back, recorded and notified (`outcomes`), and a schedule checks at
`verify_within` that its alarm left ALARM (`verify`). An OK event credits the last change
with its recovery (`verify.credit_recovery`).

A policy whose action diagnoses (`api.diagnose`) first reads what happened, after the kill
switch: the action it chooses is the one that meets guardrails 2-6, on the resource it
changes (lock, cooldown and circuit breaker are that resource's), and the one recorded; its
own risk decides approval unless the policy sets `approval`. No choice is `inconclusive`,
escalated with the figures. The diagnosis is part of the audit record either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeGuard

from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.errors import TargetNotFound
from remediators.core.events import AlarmDetail, AlarmEvent, AlarmStateValue
from remediators.core.flows import FLOW_STARTED, Flows
from remediators.core.guardrails import Claim, Gate, GuardrailState, KillSwitch
from remediators.core.notify import Notifier
from remediators.core.outcomes import ESCALATE, Recorder, as_duplicate, build_record
from remediators.core.policy import Policies, Policy, load_shipped_policy_file
from remediators.core.registry import Action, Diagnosis, Target, get_action
from remediators.core.settings import Settings
from remediators.core.verify import Scheduler, credit_recovery

__all__ = ["Remediator"]

logger = logging.getLogger(__name__)

_RECOVERY = "recovery"  # an OK event: credit the last action instead of acting


def _base(event: AlarmEvent) -> dict[str, Any]:
    """The audit fields every record of this event has."""
    return {
        "event_id": event.id,
        "alarm": event.detail.alarm_name,
        "alarm_state": event.detail.state.value.value,
        "started_at": clock.now(),
    }


@dataclass
class _Step:
    """Where routing or choosing got to: a stop (the reason), or a target and an action."""

    policy: Policy | None = None
    action: Action[Any, Any] | None = None
    stop: str | None = None
    target: Target | None = None


def _acted(previous: AuditRecord | None) -> TypeGuard[AuditRecord]:
    """Whether an earlier attempt of the event acted (or asked to): it must not again."""
    return previous is not None and (previous.outcome is Outcome.APPLIED or bool(previous.approval))


def _landed(previous: AuditRecord | None, action: Action[Any, Any]) -> bool:
    """Whether the failed attempt recorded in `previous` made its planned change after all
    (the resource now reads as planned, not as before). Only for actions whose state says
    it: an action that compares nothing (a WAF set other writers change) never counts."""
    if previous is None or previous.outcome is not Outcome.FAILED:
        return False
    if previous.planned is None or previous.before is None:
        return False
    # The same change: a diagnosis may choose another action or resource on a retry.
    if (previous.action, previous.target) != (action.name, action.target.resource_key):
        return False
    try:
        planned = action.comparable(previous.planned)
        if not planned or planned == action.comparable(previous.before):
            return False
    except KeyError:  # a state of another shape: not this action's plan
        return False
    return action.comparable(action.read()) == planned


class Remediator:
    """Turns alarm events into at most one action each, and always into one audit record."""

    def __init__(
        self,
        *,
        policies: Policies,
        audit: AuditStore,
        notifier: Notifier,
        kill_switch: KillSwitch,
        guardrails: GuardrailState,
        scheduler: Scheduler,
        approval_state_machine: str | None = None,
        flow_state_machines: dict[str, str] | None = None,
    ) -> None:
        self.policies = policies
        self.approval_state_machine = approval_state_machine
        self.audit = audit
        self.kill_switch = kill_switch
        self.guardrails = guardrails
        self.scheduler = scheduler
        self.recorder = Recorder(policies, audit, notifier)
        self.flows = Flows(flow_state_machines or {}, self.recorder)

    @classmethod
    def from_settings(cls, settings: Settings, verifier_arn: str) -> Remediator:
        """The remediator the deployed functions run (`verifier_arn`: the function that
        verification schedules invoke)."""
        audit = AuditStore(settings.audit_table)
        return cls(
            policies=load_shipped_policy_file(settings.policy_path),
            audit=audit,
            notifier=Notifier(settings.notification_topics),
            kill_switch=KillSwitch(settings.kill_switch_parameter),
            guardrails=GuardrailState(settings.locks_table, audit),
            scheduler=Scheduler(verifier_arn, settings.scheduler_role_arn),
            approval_state_machine=settings.approval_state_machine,
            flow_state_machines=settings.flow_state_machines,
        )

    def gate(self, policy: Policy) -> Gate:
        """The cooldown and circuit breaker `policy`'s changes meet."""
        return Gate(
            policy.name, self.policies.cooldown(policy), self.policies.max_actions_per_day(policy)
        )

    def handle(self, event: AlarmEvent) -> AuditRecord:  # noqa: PLR0911, PLR0912 (a return per outcome)
        """Remediate one event. A failure is recorded and notified, then re-raised so that
        Lambda retries the event and finally sends it to the dead-letter queue.

        An event's earlier record (a redelivery, a retry, a replay) is read before anything is
        recorded, except where the resource's guardrail state says there is none to read: the
        common path reads no record (see `guardrails.ResourceState.knows`)."""
        base = _base(event)
        policy: Policy | None = None
        claim: Claim | None = None
        previous: AuditRecord | None = None
        read = False  # whether `previous` is known
        try:
            step = self._route(event, base)
            if step.stop == _RECOVERY:
                return credit_recovery(self.recorder, base, event.detail)
            policy = step.policy
            direct = step.stop is None and policy is not None and not policy.action_class.diagnoses
            if not direct or (policy is not None and self.policies.dry_run(policy)):
                previous, read = self.audit.get(event.id), True
                if _acted(previous):
                    return self._duplicate(previous)
            if step.stop or policy is None:
                return self.recorder.finish(base, Outcome.SKIPPED, step.stop, policy)
            if not self.kill_switch.enabled():
                if not read:
                    previous, read = self.audit.get(event.id), True
                    if _acted(previous):
                        return self._duplicate(previous)
                return self.recorder.finish(base, Outcome.SKIPPED, "disabled", policy)
            assert step.target is not None
            step = self._choose(policy, step.target, event.detail, base, previous)
            if step.stop or step.action is None:
                escalate = step.stop in ESCALATE
                return self.recorder.finish(
                    base, Outcome.SKIPPED, step.stop, policy, notify=escalate, escalated=escalate
                )
            action = step.action
            if self.policies.dry_run(policy):
                plan = action.plan()
                base |= {
                    "before": plan.before,
                    "planned": plan.after,
                    "changes": plan.changes,
                    "dry_run": True,
                }
                return self.recorder.finish(
                    base, Outcome.SKIPPED, plan.skip_reason or "dry_run", policy, notify=True
                )
            claim = self.guardrails.claim(base["target"], event.id, self.gate(policy))
            if not read:
                known = claim.state.knows(event.id)
                previous, read = (self.audit.get(event.id) if known else None), True
                if _acted(previous):
                    claim.release()
                    return self._duplicate(previous)
            if claim.stop:
                escalate = claim.stop in ESCALATE
                return self.recorder.finish(
                    base | {"error": claim.note},
                    Outcome.SKIPPED,
                    claim.stop,
                    policy,
                    notify=escalate,
                    escalated=escalate,
                    claim=claim,
                )
            return self._act(base, policy, action, claim, previous)
        except TargetNotFound as error:
            return self.recorder.finish(
                base | {"error": str(error)},
                Outcome.SKIPPED,
                "target_not_found",
                policy,
                claim=claim,
            )
        except Exception as error:
            if not read:
                previous = self.audit.get(event.id)
            if claim is not None:
                claim.remember_event()  # its retry reads this record: the change may be made
            # Lambda retries a failed event: tell the operators once, not once per attempt.
            self.recorder.failed(
                base,
                policy,
                error,
                notify=previous is None or previous.outcome is not Outcome.FAILED,
                claim=claim,
            )
            raise

    def _duplicate(self, previous: AuditRecord) -> AuditRecord:
        """A redelivery, retry or replay of an event that acted (or asked) already."""
        if previous.outcome is Outcome.PENDING and previous.reason == FLOW_STARTED:
            self.flows.run(previous)  # in case the attempt that recorded it died first
        return as_duplicate(previous)

    def explain(self, event: AlarmEvent) -> AuditRecord:  # noqa: PLR0911 (a return per outcome)
        """What `handle` would record for `event`, found with reads only: nothing is changed,
        locked, recorded or notified. (An `applied` outcome means it would apply.)"""
        previous = self.audit.get(event.id)
        if previous is not None and previous.outcome is Outcome.APPLIED:
            return as_duplicate(previous)
        base = _base(event)
        try:
            step = self._route(event, base)
            if step.stop == _RECOVERY:
                return build_record(base, Outcome.SKIPPED, "recovered")
            if step.stop or step.policy is None:
                return build_record(base | {"escalated": False}, Outcome.SKIPPED, step.stop)
            policy = step.policy
            if not self.kill_switch.enabled():
                return build_record(base, Outcome.SKIPPED, "disabled")
            assert step.target is not None
            step = self._choose(policy, step.target, event.detail, base, None)
            if step.stop or step.action is None:
                escalate = step.stop in ESCALATE
                return build_record(base | {"escalated": escalate}, Outcome.SKIPPED, step.stop)
            plan = step.action.plan()
        except TargetNotFound as error:
            return build_record(base | {"error": str(error)}, Outcome.SKIPPED, "target_not_found")
        base |= {"before": plan.before, "planned": plan.after, "changes": plan.changes}
        if self.policies.dry_run(policy):
            reason = plan.skip_reason or "dry_run"
            return build_record(base | {"dry_run": True}, Outcome.SKIPPED, reason)
        state = self.guardrails.read(base["target"])
        blocked = state.blocked(self.gate(policy), base["started_at"], base["target"])
        if blocked:
            reason, note = blocked
            return build_record(base | {"error": note}, Outcome.SKIPPED, reason)
        if plan.skip_reason:
            return build_record(
                base | {"error": plan.note or None}, Outcome.SKIPPED, plan.skip_reason
            )
        if step.action.flow is not None:
            return build_record(base, Outcome.PENDING, FLOW_STARTED)
        if policy.needs_approval(type(step.action)):
            return build_record(base, Outcome.PENDING, "awaiting_approval")
        return build_record(base, Outcome.APPLIED, None)

    def _route(self, event: AlarmEvent, base: dict[str, Any]) -> _Step:
        """Alarm state, policy and target: what the event is about, without a call to AWS.
        Adds what it learns to the audit fields `base`."""
        alarm = event.detail
        if alarm.state.value is AlarmStateValue.OK:
            return _Step(stop=_RECOVERY)
        if alarm.state.value is not AlarmStateValue.ALARM:
            return _Step(stop="not_alarm")
        policy = self.policies.policy_for_alarm(alarm.alarm_name)
        if policy is None:
            return _Step(stop="no_policy")
        base |= {"policy": policy.name, "action": policy.action}
        target: Target | None = policy.target or policy.action_class.target_from_alarm(alarm)
        if target is None:
            return _Step(policy, stop="no_target")
        base |= {"target": target.resource_key, "target_spec": target.model_dump(mode="json")}
        return _Step(policy, target=target)

    def _choose(
        self,
        policy: Policy,
        target: Target,
        alarm: AlarmDetail,
        base: dict[str, Any],
        previous: AuditRecord | None,
    ) -> _Step:
        """The action to run on `target`: the policy's, or the one its diagnosis chooses
        (whose target is then the event's: the lock, cooldown and circuit breaker guard it,
        added to `base`). `previous`:
        this event's record from an earlier attempt, if any."""
        action = policy.action_class(target, policy.params, alarm)
        if action.diagnoses:
            return self._diagnosed(policy, action, alarm, base, previous)
        return _Step(policy, action)

    @staticmethod
    def _diagnosed(
        policy: Policy,
        diagnoser: Action[Any, Any],
        alarm: AlarmDetail,
        base: dict[str, Any],
        previous: AuditRecord | None,
    ) -> _Step:
        """Run a diagnosing action; the action it chooses becomes the event's action, its
        target the event's target. A retry of an event whose attempt failed keeps that
        attempt's choice: its change may have gone through, and a new diagnosis would read the
        figures that change moved."""
        if previous is not None and previous.outcome is Outcome.FAILED and previous.diagnosis:
            diagnosis = Diagnosis.model_validate(previous.diagnosis)
        else:
            diagnosis = diagnoser.diagnose()
        base["diagnosis"] = diagnosis.model_dump(mode="json")
        if diagnosis.action is None:
            return _Step(policy, stop="inconclusive")
        chosen = get_action(diagnosis.action)
        target = chosen.target_model.model_validate(diagnosis.target)
        params = chosen.params_model.model_validate(diagnosis.params)
        base |= {
            "action": chosen.name,
            "target": target.resource_key,
            "target_spec": target.model_dump(mode="json"),
        }
        return _Step(policy, chosen(target, params, alarm), target=target)

    def _act(
        self,
        base: dict[str, Any],
        policy: Policy,
        action: Action[Any, Any],
        claim: Claim,
        previous: AuditRecord | None = None,
    ) -> AuditRecord:
        """Plan (caps) and apply, under the resource's lock (`claim`), cooldown and circuit
        breaker passed."""
        if _landed(previous, action):
            # A retry of an event whose change went through although its answer was lost:
            # record the change it made, and do not make another on top of it.
            assert previous is not None
            base |= {
                "before": previous.before,
                "planned": previous.planned,
                "changes": previous.changes,
                "error": f"an earlier attempt failed ({previous.error}), but its change went "
                "through: not made again",
            }
            return self.applied(base, policy, action, claim)
        plan = action.plan()
        base |= {"before": plan.before, "planned": plan.after, "changes": plan.changes}
        if plan.skip_reason:
            escalate = plan.skip_reason in ESCALATE
            return self.recorder.finish(
                base | {"error": plan.note or None},
                Outcome.SKIPPED,
                plan.skip_reason,
                policy,
                notify=escalate,
                escalated=escalate,
                claim=claim,
            )
        if action.flow is not None:
            return self.flows.start(base, policy, action, claim)
        if policy.needs_approval(type(action)):
            # Imported here: the approval models cost cold start, and most changes need none.
            from remediators.core.approved_changes import request_approval

            return request_approval(self, base, policy, action, plan, claim=claim)
        action.apply(plan)
        return self.applied(base, policy, action, claim)

    def applied(
        self, base: dict[str, Any], policy: Policy, action: Action[Any, Any], claim: Claim
    ) -> AuditRecord:
        """The change is made: read it back, record it (with the change in the resource's
        guardrail state, releasing `claim`), notify, schedule its verification."""
        # From here on the change is made: record it if at all possible, never fail the event
        # (a retry would act again).
        try:
            base["after"] = action.read_back()
        except Exception as error:
            base["error"] = f"applied, but reading the result back failed: {error}"
        claim.record_change(policy.name)
        try:
            record = self.recorder.finish(
                base, Outcome.APPLIED, None, policy, notify=True, claim=claim
            )
        except Exception:
            logger.exception("applied %s, but the audit record could not be written", base)
            return build_record(base, Outcome.APPLIED, None)
        window = self.policies.verify_within(policy)
        if window:
            try:
                self.scheduler.schedule_verification(record.event_id, record.recorded_at + window)
            except Exception:  # the change is made and recorded: never fail (and retry) it
                logger.exception("could not schedule the verification of %s", record.event_id)
        return record
