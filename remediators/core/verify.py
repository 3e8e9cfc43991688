"""Did the action help? Verification and recovery, both read from the alarm.

- Verification: after an applied action, a one-time EventBridge Scheduler schedule invokes the
  verification handler at `verify_within` with a `VerifyRequest` (the schedule deletes itself
  once it has run); an alarm still in ALARM then is escalated (`unresolved`).
- Recovery: the alarm's OK event credits the last action it caused with its time to recovery.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from remediators.core.audit import AuditRecord, Outcome
from remediators.core.aws import client
from remediators.core.events import AlarmDetail, AlarmStateValue
from remediators.core.outcomes import Recorder

__all__ = [
    "RECOVERY_LOOKBACK",
    "SCHEDULE_GROUP",
    "SCHEDULE_PREFIX",
    "Scheduler",
    "VerifyRequest",
    "alarm_state",
    "credit_recovery",
    "verify",
]

# How far back a recovering alarm looks for the action to credit.
RECOVERY_LOOKBACK = timedelta(days=7)

# Schedules live in the default group, named with this prefix (the IAM grant is scoped to it).
SCHEDULE_GROUP = "default"
SCHEDULE_PREFIX = "autoremediate-verify-"


class VerifyRequest(BaseModel):
    """What the schedule sends to the verification handler at the deadline."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["verify"]
    id: str  # the idempotency key: one verification per action
    event_id: str


class Scheduler:
    """Creates the one-time verification schedules."""

    def __init__(self, function_arn: str, role_arn: str) -> None:
        self.function_arn = function_arn
        self.role_arn = role_arn

    def schedule_verification(self, event_id: str, at: datetime) -> str:
        """Invoke the verification handler with a VerifyRequest for `event_id` at `at`;
        returns the schedule's name."""
        name = SCHEDULE_PREFIX + hashlib.sha256(event_id.encode()).hexdigest()[:32]
        request = VerifyRequest(kind="verify", id=f"verify-{event_id}", event_id=event_id)
        client("scheduler").create_schedule(
            Name=name,
            GroupName=SCHEDULE_GROUP,
            ScheduleExpression=f"at({at:%Y-%m-%dT%H:%M:%S})",
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target={
                "Arn": self.function_arn,
                "RoleArn": self.role_arn,
                "Input": request.model_dump_json(),
            },
            Description=f"autoremediate: is the alarm of {event_id} still in ALARM?",
        )
        return name


def alarm_state(alarm_name: str) -> str | None:
    """The alarm's current state value, or None if it is not found (deleted). Asking for
    composite alarms needs DescribeAlarms on `*` (the verification role has it); with a
    narrower grant AWS refuses the call, and the error is raised."""
    response = client("cloudwatch").describe_alarms(
        AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    alarms = response.get("MetricAlarms", []) + response.get("CompositeAlarms", [])
    return str(alarms[0]["StateValue"]) if alarms else None


def verify(recorder: Recorder, request: VerifyRequest) -> AuditRecord | None:
    """At an action's verification deadline: escalate if its alarm is still in ALARM. None:
    nothing to verify (no such applied action with an alarm)."""
    audit, policies = recorder.audit, recorder.policies
    record = audit.get(request.event_id)
    if record is None or record.outcome is not Outcome.APPLIED or record.alarm is None:
        return None
    # Recovered once is resolved: a later ALARM is a new incident with its own events. An
    # alarm that cannot be read (deleted, or not returned) says nothing: a person looks.
    state = None if record.recovered_at is not None else alarm_state(record.alarm)
    resolved = record.recovered_at is not None or state not in (None, AlarmStateValue.ALARM.value)
    audit.mark_verified(record.event_id, resolved)
    verified = record.model_copy(update={"verified": resolved})
    if not resolved:
        reason = "unresolved" if state is not None else "unverifiable"
        verified = verified.model_copy(update={"escalated": True, "reason": reason})
        policy = policies.policy_for_alarm(record.alarm)
        channel = policies.channel(policy) if policy else None
        recorder.notifier.notify(verified, channel)
    return verified


def credit_recovery(recorder: Recorder, base: dict[str, Any], alarm: AlarmDetail) -> AuditRecord:
    """The alarm is back to OK: credit the last change it caused with the recovery; the OK
    event itself is recorded (`recovered`, or `ok_without_action`)."""
    audit, policies = recorder.audit, recorder.policies
    policy = policies.policy_for_alarm(alarm.alarm_name)
    if policy is None:
        return recorder.finish(base, Outcome.SKIPPED, "no_policy")
    base |= {"policy": policy.name, "action": policy.action}
    now = base["started_at"]
    action = audit.last_applied_for_alarm(alarm.alarm_name, now - RECOVERY_LOOKBACK)
    if action is None or action.recovered_at is not None:
        return recorder.finish(base, Outcome.SKIPPED, "ok_without_action", policy)
    seconds = max(0, int((now - action.recorded_at).total_seconds()))
    # The index may not show yet that another OK event credited it: the table decides.
    if not audit.mark_recovered(action.event_id, now, seconds):
        return recorder.finish(base, Outcome.SKIPPED, "ok_without_action", policy)
    base |= {
        "target": action.target,
        "recovery_seconds": seconds,
        "changes": [f"alarm back to OK {seconds} s after action {action.event_id}"],
    }
    return recorder.finish(base, Outcome.SKIPPED, "recovered", policy)
