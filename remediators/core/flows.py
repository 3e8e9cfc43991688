"""Actions of many steps (`Action.flow`: a restore) run in their own state machine: started
by the alarm pipeline, which records the event `pending` (`flow_started`); the flow asks for
approval itself and records the outcome under the same event id. A flow's execution that ends
without recording (FAILED, TIMED_OUT, ABORTED) reaches `flow_ended` through a rule."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from remediators.core import clock
from remediators.core.audit import AuditRecord, Outcome, iso_time
from remediators.core.guardrails import Claim
from remediators.core.outcomes import Recorder
from remediators.core.policy import Policy
from remediators.core.registry import Action

__all__ = [
    "FLOW_ENDED_DETAIL_TYPE",
    "FLOW_ENDINGS",
    "FLOW_STARTED",
    "Flows",
    "flow_ended",
]

# A flow action's event while its state machine runs; how far back a running one is looked for.
FLOW_STARTED = "flow_started"
FLOW_LOOKBACK = timedelta(days=30)
# How Step Functions reports an execution's end (EventBridge), and the endings without success.
FLOW_ENDED_DETAIL_TYPE = "Step Functions Execution Status Change"
FLOW_ENDINGS = ("FAILED", "TIMED_OUT", "ABORTED")


class Flows:
    """Starts the deployed flows (`state_machines`: ARN by flow name)."""

    def __init__(self, state_machines: dict[str, str], recorder: Recorder) -> None:
        self.state_machines = state_machines
        self.recorder = recorder

    def start(
        self, base: dict[str, Any], policy: Policy, action: Action[Any, Any], claim: Claim
    ) -> AuditRecord:
        """A change of many steps (a restore): start its state machine with the plan (in
        `base`). The flow asks for approval itself and records the outcome under this event
        id; until then the event is `pending` (a redelivery finds it started). One flow per
        resource at a time: a re-fire while one runs is skipped. `claim`: the resource's lock,
        released with the record."""
        running = claim.running_flow
        if (
            running is not None
            and running["action"] == action.name
            and running["at"] >= iso_time(base["started_at"] - FLOW_LOOKBACK)
        ):
            note = f"the {action.flow} of event {running['event']} is still in progress"
            return self.recorder.finish(
                base | {"error": note}, Outcome.SKIPPED, "flow_in_progress", policy, claim=claim
            )
        state_machine = self.state_machines.get(str(action.flow))
        if state_machine is None:
            raise RuntimeError(f"this policy runs the {action.flow} flow, which is not deployed")
        name = f"{action.flow}-{hashlib.sha256(base['event_id'].encode()).hexdigest()[:32]}"
        execution = state_machine.replace(":stateMachine:", ":execution:") + ":" + name
        fields = base | {"approval": {"flow": action.flow, "execution": execution}}
        # Recorded first: the flow's own records of this event come after it, never before.
        claim.record_flow(action.name)
        record = self.recorder.finish(fields, Outcome.PENDING, FLOW_STARTED, claim=claim)
        self.run(record, action.alarm.state.reason if action.alarm else "")
        return record

    def run(self, record: AuditRecord, alarm_reason: str = "") -> None:
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
        if self.state_machines.get(flow) != state_machine:
            raise RuntimeError(f"the {flow} flow of {record.event_id} is not deployed here")
        start_execution(state_machine, name, json.dumps({"start": start}))


def flow_ended(recorder: Recorder, event: dict[str, Any]) -> AuditRecord:
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
    record = recorder.audit.get(str(event_id)) if event_id else None
    if record is not None and record.outcome is Outcome.PENDING:
        policies = recorder.policies
        policy = policies.policy_named(record.policy) if record.policy else None
        fields = record.model_dump(exclude={"outcome", "reason", "recorded_at", "escalated"})
        error = f"its flow {execution} ended {status} before it recorded an outcome"
        return recorder.finish(
            fields | {"error": error},
            Outcome.FAILED,
            "flow_ended",
            policy,
            notify=True,
            escalated=True,
        )
    note = f"flow {execution} ended {status}; event {event_id} has its outcome already"
    return recorder.finish(
        {"event_id": str(event["id"]), "started_at": now, "error": note},
        Outcome.SKIPPED,
        "flow_recorded",
    )
