"""What an operator does to a deployed stack, with the caller's AWS credentials: read its
outputs and settings, list and replay dead letters, read the history, revert, decide approvals,
start a restore. `remediate` (cli/) prints these; the simulator plays the same code on moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3

from remediators.core import clock
from remediators.core.approval import ApprovalStore, Decision, LinkRefused, Verdict
from remediators.core.audit import AuditRecord, AuditStore
from remediators.core.errors import AutoremediateError
from remediators.core.expiry import SWEEP_DETAIL_TYPE
from remediators.core.flows import FLOW_ENDED_DETAIL_TYPE
from remediators.core.guardrails import GuardrailState
from remediators.core.notify import Notifier
from remediators.core.revert import revert
from remediators.core.settings import Settings

__all__ = [
    "DEFAULT_STACK",
    "ApprovalRefused",
    "DeadLetter",
    "StackNotFound",
    "dead_letters",
    "decide_approval",
    "deployed_settings",
    "event_kind",
    "format_history",
    "handler_functions",
    "history",
    "list_approvals",
    "replay",
    "revert_action",
    "stack_outputs",
    "start_restore",
]

DEFAULT_STACK = "Autoremediate"


class StackNotFound(AutoremediateError):
    """The named stack (or its remediator function) is not deployed where the caller looks."""


def stack_outputs(stack_name: str = DEFAULT_STACK) -> dict[str, str]:
    """The outputs of a deployed autoremediate stack."""
    try:
        stack = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except Exception as error:
        raise StackNotFound(f"stack {stack_name!r} not found: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if "RemediatorFunctionName" not in outputs:
        raise StackNotFound(f"stack {stack_name!r} is not an autoremediate stack")
    return outputs


def deployed_settings(stack_name: str = DEFAULT_STACK) -> Settings:
    """The remediator's settings, read from the deployed function's environment."""
    variables = boto3.client("lambda").get_function_configuration(
        FunctionName=stack_outputs(stack_name)["RemediatorFunctionName"]
    )["Environment"]["Variables"]
    return Settings.from_env(dict(variables))


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be delivered or handled, with the error that stopped it."""

    queue: str  # "function" (failed after Lambda's retries) or "rule" (undeliverable)
    event: dict[str, Any]
    error: str
    receipt_handle: str
    queue_url: str


def dead_letters(stack_name: str = DEFAULT_STACK, hold: bool = False) -> list[DeadLetter]:
    """The messages waiting in the stack's dead-letter queues. Listing leaves them visible;
    `hold` hides them from other readers for a minute (while they are being replayed)."""
    queues = json.loads(stack_outputs(stack_name)["DeadLetterQueues"])
    sqs = boto3.client("sqs")
    letters: dict[str, DeadLetter] = {}
    for queue, url in sorted(queues.items()):
        while True:
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=60 if hold else 0,
            ).get("Messages", [])
            new = [m for m in batch if m["MessageId"] not in letters]
            if not new:
                break
            for message in new:
                attributes = message.get("MessageAttributes", {})
                error = " ".join(
                    attributes[key]["StringValue"]
                    for key in ("ErrorCode", "ErrorMessage", "ERROR_CODE", "ERROR_MESSAGE")
                    if key in attributes
                )
                letters[message["MessageId"]] = DeadLetter(
                    queue=queue,
                    event=json.loads(message["Body"]),
                    error=error,
                    receipt_handle=message["ReceiptHandle"],
                    queue_url=url,
                )
    return list(letters.values())


def handler_functions(stack_name: str = DEFAULT_STACK) -> dict[str, str]:
    """The deployed function of each event kind (`alarm`, `verification`, `flow_ended`,
    `expiry`), by name."""
    outputs = stack_outputs(stack_name)
    if "HandlerFunctions" not in outputs:  # a stack deployed before the kinds had functions
        return {"alarm": outputs["RemediatorFunctionName"]}
    return dict(json.loads(outputs["HandlerFunctions"]))


def event_kind(event: Any) -> str:
    """Which entry point handles `event`, told by its shape as the stack's rules and schedules
    tell it: a verification request, a flow's ending, the expiry sweep, else an alarm event
    (whose handler records anything malformed as `invalid`)."""
    if isinstance(event, dict):
        if event.get("kind") == "verify":
            return "verification"
        if event.get("detail-type") == FLOW_ENDED_DETAIL_TYPE:
            return "flow_ended"
        if event.get("detail-type") == SWEEP_DETAIL_TYPE:
            return "expiry"
    return "alarm"


def replay(
    letters: list[DeadLetter],
    functions: dict[str, str],
    invoke: Callable[[str, dict[str, Any]], None] | None = None,
) -> int:
    """Deliver each event again to the function of its kind (`functions`, as
    `handler_functions` gives them; asynchronously, as EventBridge does), then delete it from
    its queue. Safe to repeat: an event id that already acted acts no more."""
    missing = sorted({event_kind(letter.event) for letter in letters} - functions.keys())
    if missing:  # before anything is sent: a half-replayed queue would be harder to read
        raise AutoremediateError(
            f"dead letters of {', '.join(missing)} events, which this stack has no function for"
        )
    send = invoke or _invoke_async
    for letter in letters:
        send(functions[event_kind(letter.event)], letter.event)
        boto3.client("sqs").delete_message(
            QueueUrl=letter.queue_url, ReceiptHandle=letter.receipt_handle
        )
    return len(letters)


def _invoke_async(function_name: str, event: dict[str, Any]) -> None:
    boto3.client("lambda").invoke(
        FunctionName=function_name, InvocationType="Event", Payload=json.dumps(event).encode()
    )


def history(settings: Settings, since: timedelta, resource: str | None = None) -> list[AuditRecord]:
    """Audit records newer than `since`, newest first, of one resource or all."""
    return AuditStore(settings.audit_table).history(clock.now() - since, target=resource)


def format_history(records: list[AuditRecord], as_json: bool = False) -> str:
    """One line per record, or a JSON list."""
    if as_json:
        return json.dumps([r.model_dump(mode="json", exclude_none=True) for r in records], indent=2)
    if not records:
        return "no audit records in that window"
    lines = []
    for record in records:
        outcome = record.outcome.value + (f":{record.reason}" if record.reason else "")
        flags = (" ESCALATED" if record.escalated else "") + (
            " (alarm still in ALARM at verification)" if record.verified is False else ""
        )
        recovered = f" recovered after {record.recovery_seconds} s" if record.recovered_at else ""
        lines.append(
            f"{record.recorded_at:%Y-%m-%d %H:%M:%S}  {outcome:28} {record.target or '-':32} "
            f"{record.policy or '-':24} {record.event_id}{flags}{recovered}"
        )
        lines += [f"    {change}" for change in record.changes]
    return "\n".join(lines)


def revert_action(settings: Settings, event_id: str, force: bool = False) -> AuditRecord:
    """Revert applied action `event_id` (see remediators.core.revert)."""
    audit = AuditStore(settings.audit_table)
    return revert(
        event_id,
        audit=audit,
        guardrails=GuardrailState(settings.locks_table, audit),
        notifier=Notifier(settings.notification_topics),
        force=force,
    )


class ApprovalRefused(AutoremediateError):
    """An approval that cannot be decided (unknown, decided already, past its deadline)."""


def _approvals(stack_name: str) -> ApprovalStore:
    table = stack_outputs(stack_name).get("ApprovalsTableName")
    if table is None:
        raise StackNotFound(f"stack {stack_name!r} has no approval flow (no policy needs one)")
    return ApprovalStore(table)


def list_approvals(
    stack_name: str = DEFAULT_STACK, everything: bool = False
) -> list[dict[str, Any]]:
    """Pending approvals (or all, with who decided), oldest deadline first."""
    return _approvals(stack_name).list(status=None if everything else "pending")


def decide_approval(stack_name: str, approval_id: str, verdict: Verdict) -> Decision:
    """Decide an approval as the caller's IAM identity (instead of the email link): once, before
    its deadline; the waiting flow resumes."""
    identity = str(boto3.client("sts").get_caller_identity()["Arn"])
    store = _approvals(stack_name)
    try:
        decision, token = store.decide(
            approval_id, verdict, "cli", f"remediate approvals ({identity})", clock.now()
        )
    except LinkRefused as refused:
        raise ApprovalRefused(f"approval {approval_id}: {refused}") from None
    boto3.client("stepfunctions").send_task_success(
        taskToken=token, output=decision.model_dump_json()
    )
    return decision


def start_restore(
    stack_name: str,
    table: str,
    backup_arn: str | None = None,
    point_in_time: bool | None = None,
) -> tuple[str, str]:
    """Start the restore flow for `table` as the caller's IAM identity, from `backup_arn`, the
    latest restorable point in time, or (neither) the table's policy's `source`. The flow asks
    for approval before it restores and again before it cuts over. Returns (event id, the
    execution's ARN)."""
    state_machine = stack_outputs(stack_name).get("RestoreStateMachineArn")
    if state_machine is None:
        raise StackNotFound(
            f"stack {stack_name!r} has no restore flow (no dynamodb.restore_from_backup policy)"
        )
    identity = str(boto3.client("sts").get_caller_identity()["Arn"])
    event_id = f"restore-{uuid.uuid4().hex[:24]}"
    start = {
        "event_id": event_id,
        "target_spec": {"table": table},
        "requested_by": f"remediate restore ({identity})",
        "backup_arn": backup_arn,
        "point_in_time": point_in_time,
    }
    execution = boto3.client("stepfunctions").start_execution(
        stateMachineArn=state_machine, name=event_id, input=json.dumps({"start": start})
    )["executionArn"]
    return event_id, str(execution)
