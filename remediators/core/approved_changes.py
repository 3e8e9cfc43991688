"""Changes that wait for an operator: the alarm pipeline hands the plan to the approval flow
(`pending`); once an operator decides, the flow's tasks call `apply_approved` (through the
guardrails again, on a resource still as planned) or `conclude` (rejected or timed out: nothing
applied, escalated). Both record the final outcome under the event's id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remediators.core import clock
from remediators.core.approval import ApprovalRequest, Decision, approval_id_for, start_approval
from remediators.core.audit import AuditRecord, Outcome
from remediators.core.errors import TargetNotFound
from remediators.core.events import AlarmStateValue
from remediators.core.outcomes import ESCALATE, Recorder, as_duplicate
from remediators.core.policy import Policy
from remediators.core.registry import Action, Plan, get_action
from remediators.core.revert import describe_changes

if TYPE_CHECKING:
    from remediators.core.guardrails import Claim
    from remediators.core.remediate import Remediator

__all__ = ["apply_approved", "conclude", "request_approval"]

# How an approval flow ends without an approved change, and the reason recorded for it.
_UNAPPROVED = {"rejected": "rejected", "timeout": "approval_timeout"}


def request_approval(
    remediator: Remediator,
    base: dict[str, Any],
    policy: Policy,
    action: Action[Any, Any],
    plan: Plan,
    *,
    claim: Claim,
) -> AuditRecord:
    """Hand the planned change to the approval flow; the event ends as `pending` (recorded
    with the resource's guardrail state, releasing `claim`)."""
    if remediator.approval_state_machine is None:
        raise RuntimeError("this policy needs approval, but no approval flow is configured")
    now = base["started_at"]
    timeout = remediator.policies.approval_timeout(policy)
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
    execution = start_approval(remediator.approval_state_machine, request)
    approval = {
        "id": request.approval_id,
        "execution": execution,
        "deadline": request.deadline.isoformat(),
    }
    claim.remember_event()
    return remediator.recorder.finish(
        base | {"approval": approval}, Outcome.PENDING, "awaiting_approval", claim=claim
    )


def apply_approved(  # noqa: PLR0911 (a return per outcome)
    remediator: Remediator, request: ApprovalRequest, decision: Decision
) -> AuditRecord:
    """An operator approved `request`: apply the approved plan if the guardrails still
    allow it and the resource is as it was when planned; record the outcome."""
    recorder = remediator.recorder
    previous = recorder.audit.get(request.event_id)
    if previous is not None and previous.outcome is Outcome.APPLIED:  # a retried task
        return as_duplicate(previous)
    base = _approval_base(request, decision.model_dump(mode="json"), previous)
    policy = remediator.policies.policy_named(request.policy)
    if policy is None:
        return recorder.finish(base, Outcome.SKIPPED, "no_policy")
    if not remediator.kill_switch.enabled():
        return recorder.finish(base, Outcome.SKIPPED, "disabled", policy, notify=True)
    if request.params is None:  # the policy's own action, with the policy's params
        action_class, params = policy.action_class, policy.params
    else:  # the action a diagnosis chose, with the params it chose
        action_class = get_action(request.action)
        params = action_class.params_model.model_validate(request.params)
    action = action_class(action_class.target_model.model_validate(request.target_spec), params)
    claim = remediator.guardrails.claim(request.target, request.event_id, remediator.gate(policy))
    try:
        if claim.stop:
            # Cooldown or circuit breaker again (other changes may have happened while it
            # waited), or the lock: the operator's approval is not carried out, and a person
            # must know.
            escalated = claim.stop == "locked" or claim.stop in ESCALATE
            return recorder.finish(
                base | {"error": claim.note},
                Outcome.SKIPPED,
                claim.stop,
                policy,
                notify=True,
                escalated=escalated,
                claim=claim,
            )
        current = action.read()
        if action.comparable(current) != action.comparable(request.plan.before):
            drift = "; ".join(describe_changes(request.plan.before, current))
            return recorder.finish(
                base | {"error": f"changed since the plan: {drift}"},
                Outcome.SKIPPED,
                "changed_since_approval",
                policy,
                notify=True,
                escalated=True,
                claim=claim,
            )
        action.apply(request.plan)
        return remediator.applied(base, policy, action, claim)
    except TargetNotFound as error:
        return recorder.finish(
            base | {"error": str(error)},
            Outcome.SKIPPED,
            "target_not_found",
            policy,
            notify=True,
            escalated=True,
            claim=claim,
        )
    except Exception as error:
        claim.remember_event()
        recorder.failed(base, policy, error, notify=True, claim=claim)
        raise


def conclude(
    recorder: Recorder, request: ApprovalRequest, ending: str, decision: Decision | None = None
) -> AuditRecord:
    """The approval flow ended without an approved change (`rejected` or `timeout`):
    nothing is applied; record who or what decided, and escalate."""
    approval = decision.model_dump(mode="json") if decision else {"decision": ending}
    base = _approval_base(request, approval, recorder.audit.get(request.event_id))
    policy = recorder.policies.policy_named(request.policy)
    return recorder.finish(
        base, Outcome.SKIPPED, _UNAPPROVED[ending], policy, notify=True, escalated=True
    )


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
