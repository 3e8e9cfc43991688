"""The remediation of one alarm event: match, guard, plan, act, read back, record, notify.

Guardrails, in the order an event meets them (duplicates are stopped earlier, by the
handler's idempotency on the event id):
1. kill switch (`disabled`)  2. dry run (`dry_run`: plan only)  3. per-resource lock (`locked`)
4. cooldown per policy and resource (`cooldown`)  5. circuit breaker: at most
`max_actions_per_day` changes to a resource in any 24 hours (`circuit_open`, escalated)
6. hard caps, in the action's plan (`at_cap`, escalated, when nothing is left to change).
A change that needs approval is then handed to the approval flow (`pending`); once an operator
decides, `apply_approved` or `conclude` records the final outcome under the same event id.
An action of many steps (`Action.flow`: a restore) is handed to its own state machine instead
(`pending`, `flow_started`), which asks for approval itself and records the outcome.
After an action, a schedule checks at `verify_within` that its alarm left ALARM.

A policy whose action diagnoses (`api.diagnose`) first reads what happened, after the kill
switch: the action it chooses is the one that meets guardrails 2-6, on the resource it
changes (lock, cooldown and circuit breaker are that resource's), and the one recorded; its
own risk decides approval unless the policy sets `approval`. No choice is `inconclusive`,
escalated with the figures. The diagnosis is part of the audit record either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from remediators.core import clock
from remediators.core.audit import EXPIRED_REASON, AuditRecord, AuditStore, Outcome
from remediators.core.errors import TargetNotFound
from remediators.core.events import AlarmDetail, AlarmEvent, AlarmStateValue
from remediators.core.guardrails import KillSwitch, ResourceLocks
from remediators.core.notify import Notifier, publish
from remediators.core.policy import Policy, PolicyFile, load_policy_file
from remediators.core.registry import Action, Diagnosis, Plan, Target, get_action
from remediators.core.revert import describe_changes
from remediators.core.settings import Settings
from remediators.core.verify import Scheduler, VerifyRequest, alarm_state

if TYPE_CHECKING:  # imported when a change needs approval: its models cost cold start
    from remediators.core.approval import ApprovalRequest, Decision

__all__ = ["CIRCUIT_WINDOW", "RECOVERY_LOOKBACK", "Remediator"]

logger = logging.getLogger(__name__)

CIRCUIT_WINDOW = timedelta(days=1)
# How far back a recovering alarm looks for the action to credit.
RECOVERY_LOOKBACK = timedelta(days=7)
# Reasons that need a person: notified as escalations.
_ESCALATE = frozenset(
    {
        "at_cap",
        "circuit_open",
        "changed_since_approval",
        "inconclusive",
        "no_reservation",
        "no_backup",
    }
)
# A flow action's event while its state machine runs; how far back a running one is looked for.
FLOW_STARTED = "flow_started"
FLOW_LOOKBACK = timedelta(days=30)
# How Step Functions reports an execution's end (EventBridge), and the endings without success.
FLOW_ENDED_DETAIL_TYPE = "Step Functions Execution Status Change"
FLOW_ENDINGS = ("FAILED", "TIMED_OUT", "ABORTED")
# How an approval flow ends without an approved change, and the reason recorded for it.
_UNAPPROVED = {"rejected": "rejected", "timeout": "approval_timeout"}


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
    """Where `_assess` got to: a stop (the reason), or an action to run."""

    policy: Policy | None = None
    action: Action[Any, Any] | None = None
    stop: str | None = None


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
        policies: PolicyFile,
        audit: AuditStore,
        notifier: Notifier,
        kill_switch: KillSwitch,
        locks: ResourceLocks,
        scheduler: Scheduler,
        approval_state_machine: str | None = None,
        flow_state_machines: dict[str, str] | None = None,
    ) -> None:
        self.policies = policies
        self.approval_state_machine = approval_state_machine
        self.flow_state_machines = flow_state_machines or {}
        self.audit = audit
        self.notifier = notifier
        self.kill_switch = kill_switch
        self.locks = locks
        self.scheduler = scheduler

    @classmethod
    def from_settings(cls, settings: Settings, function_arn: str) -> Remediator:
        """The remediator the deployed functions run (`function_arn`: the remediator function,
        which verification schedules invoke)."""
        return cls(
            policies=load_policy_file(settings.policy_path),
            audit=AuditStore(settings.audit_table),
            notifier=Notifier(settings.notification_topics),
            kill_switch=KillSwitch(settings.kill_switch_parameter),
            locks=ResourceLocks(settings.locks_table),
            scheduler=Scheduler(function_arn, settings.scheduler_role_arn),
            approval_state_machine=settings.approval_state_machine,
            flow_state_machines=settings.flow_state_machines,
        )

    def handle(self, event: AlarmEvent) -> AuditRecord:  # noqa: PLR0911 (a return per outcome)
        """Remediate one event. A failure is recorded and notified, then re-raised so that
        Lambda retries the event and finally sends it to the dead-letter queue."""
        previous = self.audit.get(event.id)
        if previous is not None and (previous.outcome is Outcome.APPLIED or previous.approval):
            # Acted (or asked) already: a redelivery after its idempotency key expired, a replay.
            if previous.outcome is Outcome.PENDING and previous.reason == FLOW_STARTED:
                self._run_flow(previous)  # in case the attempt that recorded it died first
            return previous.model_copy(update={"outcome": Outcome.SKIPPED, "reason": "duplicate"})
        base = _base(event)
        policy: Policy | None = None
        try:
            step = self._assess(event, base, previous)
            policy = step.policy
            if step.stop == _RECOVERY:
                return self._recovery(base, event.detail)
            if step.stop or step.action is None or policy is None:
                escalate = step.stop in _ESCALATE
                return self._finish(
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
                return self._finish(
                    base, Outcome.SKIPPED, plan.skip_reason or "dry_run", policy, notify=True
                )
            with self.locks.hold(base["target"], owner=event.id) as held:
                if not held:
                    return self._finish(base, Outcome.SKIPPED, "locked", policy)
                return self._act(base, policy, action, previous)
        except TargetNotFound as error:
            return self._finish(
                base | {"error": str(error)}, Outcome.SKIPPED, "target_not_found", policy
            )
        except Exception as error:
            # Lambda retries a failed event: tell the operators once, not once per attempt.
            self._failed(
                base,
                policy,
                error,
                notify=previous is None or previous.outcome is not Outcome.FAILED,
            )
            raise

    def explain(self, event: AlarmEvent) -> AuditRecord:  # noqa: PLR0911 (a return per outcome)
        """What `handle` would record for `event`, found with reads only: nothing is changed,
        locked, recorded or notified. (An `applied` outcome means it would apply.)"""
        previous = self.audit.get(event.id)
        if previous is not None and previous.outcome is Outcome.APPLIED:
            return previous.model_copy(update={"outcome": Outcome.SKIPPED, "reason": "duplicate"})
        base = _base(event)
        try:
            step = self._assess(event, base)
            if step.stop == _RECOVERY:
                return self._record(base, Outcome.SKIPPED, "recovered")
            if step.stop or step.action is None or step.policy is None:
                escalate = step.stop in _ESCALATE
                return self._record(base | {"escalated": escalate}, Outcome.SKIPPED, step.stop)
            plan = step.action.plan()
        except TargetNotFound as error:
            return self._record(base | {"error": str(error)}, Outcome.SKIPPED, "target_not_found")
        base |= {"before": plan.before, "planned": plan.after, "changes": plan.changes}
        if self.policies.dry_run(step.policy):
            reason = plan.skip_reason or "dry_run"
            return self._record(base | {"dry_run": True}, Outcome.SKIPPED, reason)
        blocked = self._gate(base, step.policy)
        if blocked:
            reason, note = blocked
            return self._record(base | {"error": note}, Outcome.SKIPPED, reason)
        if plan.skip_reason:
            return self._record(
                base | {"error": plan.note or None}, Outcome.SKIPPED, plan.skip_reason
            )
        if step.action.flow is not None:
            return self._record(base, Outcome.PENDING, FLOW_STARTED)
        if step.policy.needs_approval(type(step.action)):
            return self._record(base, Outcome.PENDING, "awaiting_approval")
        return self._record(base, Outcome.APPLIED, None)

    def _assess(
        self, event: AlarmEvent, base: dict[str, Any], previous: AuditRecord | None = None
    ) -> _Step:
        """Alarm state, policy, target and kill switch: the decisions before any lock.
        Adds what it learns (policy, action, target) to the audit fields `base`. `previous`:
        this event's record from an earlier attempt, if any."""
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
        if not self.kill_switch.enabled():
            return _Step(policy, stop="disabled")
        action = policy.action_class(target, policy.params, alarm)
        return (
            self._diagnosed(policy, action, alarm, base, previous)
            if action.diagnoses
            else _Step(policy, action)
        )

    @staticmethod
    def _diagnosed(
        policy: Policy,
        diagnoser: Action[Any, Any],
        alarm: AlarmDetail,
        base: dict[str, Any],
        previous: AuditRecord | None,
    ) -> _Step:
        """Run a diagnosing action; the action it chooses becomes the event's action, its
        target the event's target (the lock, cooldown and circuit breaker guard that). A retry
        of an event whose attempt failed keeps that attempt's choice: its change may have gone
        through, and a new diagnosis would read the figures that change moved."""
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
        return _Step(policy, chosen(target, params, alarm))

    def _gate(self, base: dict[str, Any], policy: Policy) -> tuple[str, str | None] | None:
        """Cooldown and circuit breaker, from the audit trail: (reason, note) if blocked."""
        started = base["started_at"]
        cooldown = self.policies.cooldown(policy)
        recent = self.audit.applied_since(base["target"], started - max(cooldown, CIRCUIT_WINDOW))
        if any(r.policy == policy.name and r.recorded_at >= started - cooldown for r in recent):
            return "cooldown", None
        in_window = [r for r in recent if r.recorded_at >= started - CIRCUIT_WINDOW]
        limit = self.policies.max_actions_per_day(policy)
        if len(in_window) >= limit:
            return (
                "circuit_open",
                f"{len(in_window)} changes to {base['target']} in 24 h (limit {limit})",
            )
        return None

    def _act(
        self,
        base: dict[str, Any],
        policy: Policy,
        action: Action[Any, Any],
        previous: AuditRecord | None = None,
    ) -> AuditRecord:
        """Cooldown, circuit breaker, plan (caps), apply: under the resource's lock."""
        blocked = self._gate(base, policy)
        if blocked:
            reason, note = blocked
            escalate = reason in _ESCALATE
            return self._finish(
                base | {"error": note},
                Outcome.SKIPPED,
                reason,
                policy,
                notify=escalate,
                escalated=escalate,
            )
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
            return self._applied(base, policy, action)
        plan = action.plan()
        base |= {"before": plan.before, "planned": plan.after, "changes": plan.changes}
        if plan.skip_reason:
            escalate = plan.skip_reason in _ESCALATE
            return self._finish(
                base | {"error": plan.note or None},
                Outcome.SKIPPED,
                plan.skip_reason,
                policy,
                notify=escalate,
                escalated=escalate,
            )
        if action.flow is not None:
            return self._start_flow(base, policy, action, plan)
        if policy.needs_approval(type(action)):
            return self._request_approval(base, policy, action, plan)
        action.apply(plan)
        return self._applied(base, policy, action)

    def _start_flow(
        self, base: dict[str, Any], policy: Policy, action: Action[Any, Any], plan: Plan
    ) -> AuditRecord:
        """A change of many steps (a restore): start its state machine with the plan. The flow
        asks for approval itself and records the outcome under this event id; until then the
        event is `pending` (a redelivery finds it started). One flow per resource at a time:
        a re-fire while one runs is skipped."""
        running = [
            record
            for record in self.audit.pending_since(
                base["target"], base["started_at"] - FLOW_LOOKBACK
            )
            if record.action == action.name
        ]
        if running:
            note = f"the {action.flow} of event {running[0].event_id} is still in progress"
            return self._finish(base | {"error": note}, Outcome.SKIPPED, "flow_in_progress", policy)
        state_machine = self.flow_state_machines.get(str(action.flow))
        if state_machine is None:
            raise RuntimeError(f"this policy runs the {action.flow} flow, which is not deployed")
        name = f"{action.flow}-{hashlib.sha256(base['event_id'].encode()).hexdigest()[:32]}"
        execution = state_machine.replace(":stateMachine:", ":execution:") + ":" + name
        fields = base | {"approval": {"flow": action.flow, "execution": execution}}
        # Recorded first: the flow's own records of this event come after it, never before.
        record = self._finish(fields, Outcome.PENDING, FLOW_STARTED)
        self._run_flow(record, action.alarm.state.reason if action.alarm else "")
        return record

    def _run_flow(self, record: AuditRecord, alarm_reason: str = "") -> None:
        """Start the flow a `flow_started` record names (again, after a crash between the two:
        the execution's name makes a second start a no-op)."""
        from remediators.core.approval import start_execution

        flow = (record.approval or {})["flow"]
        execution = str((record.approval or {})["execution"])
        start = {
            "event_id": record.event_id,
            "policy": record.policy,
            "alarm": record.alarm,
            "alarm_reason": alarm_reason,
            "target_spec": record.target_spec,
            "plan": {
                "before": record.before or {},
                "after": record.planned or {},
                "changes": record.changes,
            },
            "requested_by": f"alarm {record.alarm}",
        }
        state_machine, name = execution.replace(":execution:", ":stateMachine:").rsplit(":", 1)
        if self.flow_state_machines.get(flow) != state_machine:
            raise RuntimeError(f"the {flow} flow of {record.event_id} is not deployed here")
        start_execution(state_machine, name, json.dumps({"start": start}))

    def _request_approval(
        self, base: dict[str, Any], policy: Policy, action: Action[Any, Any], plan: Plan
    ) -> AuditRecord:
        """Hand the planned change to the approval flow; the event ends as `pending`."""
        from remediators.core.approval import ApprovalRequest, approval_id_for, start_approval

        if self.approval_state_machine is None:
            raise RuntimeError("this policy needs approval, but no approval flow is configured")
        now = base["started_at"]
        timeout = self.policies.approval_timeout(policy)
        request = ApprovalRequest(
            approval_id=approval_id_for(base["event_id"]),
            event_id=base["event_id"],
            policy=policy.name,
            action=action.name,
            # A diagnosis chose the action: its params are not the policy's.
            params=action.params.model_dump(mode="json") if policy.action_class.diagnoses else None,
            alarm=base["alarm"],
            alarm_reason=action.alarm.state.reason if action.alarm else "",
            target=base["target"],
            target_spec=base["target_spec"],
            plan=plan,
            requested_at=now,
            deadline=now + timeout,
            timeout_seconds=max(1, int(timeout.total_seconds())),
        )
        execution = start_approval(self.approval_state_machine, request)
        approval = {
            "id": request.approval_id,
            "execution": execution,
            "deadline": request.deadline.isoformat(),
        }
        return self._finish(base | {"approval": approval}, Outcome.PENDING, "awaiting_approval")

    def apply_approved(self, request: ApprovalRequest, decision: Decision) -> AuditRecord:  # noqa: PLR0911
        """An operator approved `request`: apply the approved plan if the guardrails still
        allow it and the resource is as it was when planned; record the outcome."""
        previous = self.audit.get(request.event_id)
        if previous is not None and previous.outcome is Outcome.APPLIED:  # a retried task
            return previous.model_copy(update={"outcome": Outcome.SKIPPED, "reason": "duplicate"})
        base = self._approval_base(request, decision.model_dump(mode="json"), previous)
        policy = self.policies.policy_named(request.policy)
        if policy is None:
            return self._finish(base, Outcome.SKIPPED, "no_policy")
        if not self.kill_switch.enabled():
            return self._finish(base, Outcome.SKIPPED, "disabled", policy, notify=True)
        if request.params is None:  # the policy's own action, with the policy's params
            action_class, params = policy.action_class, policy.params
        else:  # the action a diagnosis chose, with the params it chose
            action_class = get_action(request.action)
            params = action_class.params_model.model_validate(request.params)
        action = action_class(action_class.target_model.model_validate(request.target_spec), params)
        try:
            with self.locks.hold(request.target, owner=request.event_id) as held:
                if not held:
                    return self._finish(
                        base, Outcome.SKIPPED, "locked", policy, notify=True, escalated=True
                    )
                stop = self._recheck(base, policy, action, request.plan)
                if stop:
                    reason, note = stop
                    return self._finish(
                        base | {"error": note},
                        Outcome.SKIPPED,
                        reason,
                        policy,
                        notify=True,
                        escalated=reason in _ESCALATE,
                    )
                action.apply(request.plan)
                return self._applied(base, policy, action)
        except TargetNotFound as error:
            return self._finish(
                base | {"error": str(error)},
                Outcome.SKIPPED,
                "target_not_found",
                policy,
                notify=True,
                escalated=True,
            )
        except Exception as error:
            self._failed(base, policy, error, notify=True)
            raise

    def _recheck(
        self, base: dict[str, Any], policy: Policy, action: Action[Any, Any], plan: Plan
    ) -> tuple[str, str | None] | None:
        """Before applying an approved plan: cooldown and circuit breaker again (other changes
        may have happened while it waited), and the resource as it was when planned."""
        blocked = self._gate(base, policy)
        if blocked:
            return blocked
        current = action.read()
        if action.comparable(current) != action.comparable(plan.before):
            drift = "; ".join(describe_changes(plan.before, current))
            return "changed_since_approval", f"changed since the plan: {drift}"
        return None

    def conclude(
        self, request: ApprovalRequest, ending: str, decision: Decision | None = None
    ) -> AuditRecord:
        """The approval flow ended without an approved change (`rejected` or `timeout`):
        nothing is applied; record who or what decided, and escalate."""
        approval = decision.model_dump(mode="json") if decision else {"decision": ending}
        base = self._approval_base(request, approval, self.audit.get(request.event_id))
        policy = self.policies.policy_named(request.policy)
        return self._finish(
            base, Outcome.SKIPPED, _UNAPPROVED[ending], policy, notify=True, escalated=True
        )

    @staticmethod
    def _approval_base(
        request: ApprovalRequest, approval: dict[str, Any], pending: AuditRecord | None
    ) -> dict[str, Any]:
        """The audit fields of the final record of an approved (or unapproved) change; the
        pending record's diagnosis, if any, carries over."""
        diagnosis = pending.diagnosis if pending is not None else None
        return {
            "event_id": request.event_id,
            "alarm": request.alarm,
            "alarm_state": AlarmStateValue.ALARM.value,
            "policy": request.policy,
            "action": request.action,
            "target": request.target,
            "target_spec": request.target_spec,
            "started_at": clock.now(),
            "before": request.plan.before,
            "planned": request.plan.after,
            "changes": request.plan.changes,
            "approval": {"id": request.approval_id} | approval,
        } | ({"diagnosis": diagnosis} if diagnosis else {})

    def _applied(
        self, base: dict[str, Any], policy: Policy, action: Action[Any, Any]
    ) -> AuditRecord:
        """The change is made: read it back, record, notify, schedule its verification."""
        # From here on the change is made: record it if at all possible, never fail the event
        # (a retry would act again).
        try:
            base["after"] = action.read_back()
        except Exception as error:
            base["error"] = f"applied, but reading the result back failed: {error}"
        try:
            record = self._finish(base, Outcome.APPLIED, None, policy, notify=True)
        except Exception:
            logger.exception("applied %s, but the audit record could not be written", base)
            return self._record(base, Outcome.APPLIED, None)
        window = self.policies.verify_within(policy)
        if window:
            try:
                self.scheduler.schedule_verification(record.event_id, record.recorded_at + window)
            except Exception:  # the change is made and recorded: never fail (and retry) it
                logger.exception("could not schedule the verification of %s", record.event_id)
        return record

    def expire_due(self, run_id: str) -> list[AuditRecord]:
        """The expiry schedule's run: undo the lapsed changes of every policy whose action's
        changes expire (blocks past `block_for`), each under its resource's lock, recorded."""
        records = []
        now = clock.now()
        for policy in self.policies.policies:
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
                with self.locks.hold(base["target"], owner=base["event_id"]) as held:
                    undone = action.expire(now) if held else []  # locked: the next run
            except Exception as error:
                records.append(
                    self._failed(base, policy, error, notify=True, reason=EXPIRED_REASON)
                )
                continue
            if undone:
                changes = [f"{item}: its time ran out, undone" for item in undone]
                fields = base | {"changes": changes, "after": {"undone": undone}}
                records.append(self._finish(fields, Outcome.APPLIED, EXPIRED_REASON, policy))
        return records

    def flow_ended(self, event: dict[str, Any]) -> AuditRecord:
        """A flow's execution ended without success (its status-change event). If the event it
        ran for is still `pending`, the flow could not record how it ended: record it failed,
        and escalate. Either way the status change itself is recorded."""
        detail = event.get("detail") or {}
        try:
            flow_input = json.loads(detail.get("input") or "{}")
        except ValueError:
            flow_input = {}
        # The approval flow's input is the request; the restore flow's, {"start": {...}}.
        event_id = (flow_input.get("start") or flow_input).get("event_id")
        status, execution = detail.get("status"), detail.get("executionArn")
        now = clock.now()
        record = self.audit.get(str(event_id)) if event_id else None
        if record is not None and record.outcome is Outcome.PENDING:
            policy = self.policies.policy_named(record.policy) if record.policy else None
            fields = record.model_dump(exclude={"outcome", "reason", "recorded_at", "escalated"})
            error = f"its flow {execution} ended {status} before it recorded an outcome"
            return self._finish(
                fields | {"error": error},
                Outcome.FAILED,
                "flow_ended",
                policy,
                notify=True,
                escalated=True,
            )
        note = f"flow {execution} ended {status}; event {event_id} has its outcome already"
        return self._finish(
            {"event_id": str(event["id"]), "started_at": now, "error": note},
            Outcome.SKIPPED,
            "flow_recorded",
        )

    def verify(self, request: VerifyRequest) -> AuditRecord | None:
        """At an action's verification deadline: escalate if its alarm is still in ALARM."""
        record = self.audit.get(request.event_id)
        if record is None or record.outcome is not Outcome.APPLIED or record.alarm is None:
            return None
        # Recovered once is resolved: a later ALARM is a new incident with its own events.
        resolved = (
            record.recovered_at is not None
            or alarm_state(record.alarm) != AlarmStateValue.ALARM.value
        )
        self.audit.mark_verified(record.event_id, resolved)
        verified = record.model_copy(update={"verified": resolved})
        if not resolved:
            verified = verified.model_copy(update={"escalated": True, "reason": "unresolved"})
            policy = self.policies.policy_for_alarm(record.alarm)
            channel = self.policies.channel(policy) if policy else None
            self.notifier.notify(verified, channel)
        return verified

    def _recovery(self, base: dict[str, Any], alarm: AlarmDetail) -> AuditRecord:
        """The alarm is back to OK: credit the last change it caused with the recovery."""
        policy = self.policies.policy_for_alarm(alarm.alarm_name)
        if policy is None:
            return self._finish(base, Outcome.SKIPPED, "no_policy")
        base |= {"policy": policy.name, "action": policy.action}
        now = base["started_at"]
        action = self.audit.last_applied_for_alarm(alarm.alarm_name, now - RECOVERY_LOOKBACK)
        if action is None or action.recovered_at is not None:
            return self._finish(base, Outcome.SKIPPED, "ok_without_action", policy)
        seconds = max(0, int((now - action.recorded_at).total_seconds()))
        self.audit.mark_recovered(action.event_id, now, seconds)
        base |= {
            "target": action.target,
            "recovery_seconds": seconds,
            "changes": [f"alarm back to OK {seconds} s after action {action.event_id}"],
        }
        return self._finish(base, Outcome.SKIPPED, "recovered", policy)

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

    def _failed(
        self,
        base: dict[str, Any],
        policy: Policy | None,
        error: Exception,
        *,
        notify: bool,
        reason: str | None = None,
    ) -> AuditRecord:
        """Record (and escalate) a failure; the caller re-raises it for a retry, or moves on."""
        fields = base | {"error": f"{type(error).__name__}: {error}"}
        return self._finish(fields, Outcome.FAILED, reason, policy, notify=notify, escalated=True)

    @staticmethod
    def _record(fields: dict[str, Any], outcome: Outcome, reason: str | None) -> AuditRecord:
        return AuditRecord(outcome=outcome, reason=reason, recorded_at=clock.now(), **fields)

    def _finish(
        self,
        fields: dict[str, Any],
        outcome: Outcome,
        reason: str | None,
        policy: Policy | None = None,
        *,
        notify: bool = False,
        escalated: bool = False,
    ) -> AuditRecord:
        record = self._record(fields | {"escalated": escalated}, outcome, reason)
        channel = self.policies.channel(policy) if notify and policy is not None else None
        publish(record, self.audit, self.notifier, channel)
        return record
