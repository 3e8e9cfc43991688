"""Verification: is the alarm still in ALARM `verify_within` after an action? Then escalate.

After an applied action, a one-time EventBridge Scheduler schedule invokes the remediator
again at the deadline with a `VerifyRequest`; the schedule deletes itself once it has run.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from remediators.core.aws import client

__all__ = ["SCHEDULE_GROUP", "SCHEDULE_PREFIX", "Scheduler", "VerifyRequest", "alarm_state"]

# Schedules live in the default group, named with this prefix (the IAM grant is scoped to it).
SCHEDULE_GROUP = "default"
SCHEDULE_PREFIX = "autoremediate-verify-"


class VerifyRequest(BaseModel):
    """What the schedule sends to the remediator at the deadline."""

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
        """Invoke the remediator with a VerifyRequest for `event_id` at `at`; returns the name."""
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
    """The alarm's current state value, or None if it no longer exists."""
    response = client("cloudwatch").describe_alarms(
        AlarmNames=[alarm_name], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    alarms = response.get("MetricAlarms", []) + response.get("CompositeAlarms", [])
    return str(alarms[0]["StateValue"]) if alarms else None
