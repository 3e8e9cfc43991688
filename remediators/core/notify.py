"""Notifications: one readable SNS message per applied change, dry run or failure."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client

if TYPE_CHECKING:  # only the approval flow's tasks render requests
    from remediators.core.approval import ApprovalRequest
    from remediators.core.approval_words import Where

__all__ = ["Notifier", "publish", "render", "render_approval_request"]

logger = logging.getLogger(__name__)

_WHY_ESCALATED = {
    "at_cap": "Nothing was changed: the resource is already at the policy's maximum or the "
    "AWS limit. Raise the cap in the policy file, or fix the cause by hand.",
    "circuit_open": "Nothing was changed: the resource has had as many automatic changes "
    "today as the policy allows (max_actions_per_day). The alarm keeps firing; a person "
    "should look at why.",
    "unresolved": "The change was made, but the alarm is still in ALARM after the policy's "
    "verify_within window: the change did not fix the cause. A person should look.",
    "unverifiable": "The change was made, but its alarm could not be read at the policy's "
    "verify_within deadline (deleted, or not visible to the verification function): nobody "
    "knows whether the change helped. A person should look.",
    "table_updating": "Nothing was changed: the table was still being updated by another change "
    "when the remediator had waited as long as it may, and DynamoDB refuses a second update "
    "meanwhile. The alarm sends no new event while it stays in ALARM: a person should look.",
    "rejected": "Nothing was changed: an operator rejected the planned change.",
    "approval_timeout": "Nothing was changed: nobody approved the planned change before its "
    "deadline. The alarm may still need a person.",
    "changed_since_approval": "Nothing was changed: the resource changed between the plan and "
    "the approval, so the approved plan no longer applies. A person should look.",
    "locked": "Nothing was changed: another action held the resource when the approved change "
    "was due. A person should look.",
    "disabled": "Nothing was changed: the kill switch was off when the approved change was due.",
    "inconclusive": "Nothing was changed: the diagnosis found no cause it may fix by itself "
    "(the figures it read are below). A person should look.",
    "no_reservation": "Nothing was changed: the throttled function has no reserved "
    "concurrency, so it shares the account's unreserved pool and its throttles are the "
    "account's. Ask for a higher concurrency quota, or reserve concurrency for it by hand.",
    "no_backup": "Nothing was changed: there is nothing to restore from (no available backup, "
    "or no point-in-time recovery). A person should look.",
    "restore_failed": "The restore failed and was stopped; the source table was never "
    "touched. The details say which step failed and what became of the restored copy (deleted, "
    "or left for a person to delete). A person should look.",
    "cutover_failed": "The table was restored and verified, but the cutover failed: the "
    "details say whether the application's setting changed. The restored copy is kept. A "
    "person should look.",
    "cutover_rejected": "The table was restored and verified, but an operator rejected the "
    "cutover: the application still reads the old table. The restored copy is kept; delete it "
    "by hand if it is not wanted.",
    "cutover_timeout": "The table was restored and verified, but nobody approved the cutover "
    "before its deadline: the application still reads the old table. The restored copy is kept.",
    "failed": "The change failed and will be retried; if it keeps failing, the event lands "
    "in the dead-letter queue. A person should look.",
}


class Notifier:
    """Publishes audit records to the SNS topic of a notification channel."""

    def __init__(self, topics: dict[str, str]) -> None:
        self.topics = topics

    def notify(self, record: AuditRecord, channel: str | None) -> str | None:
        """Publish `record` to `channel`'s topic; returns the message id, None if no topic."""
        subject, body = render(record)
        return self.send(channel, subject, body)

    def send(self, channel: str | None, subject: str, body: str) -> str | None:
        """Publish a message to `channel`'s topic; returns the message id, None if no topic."""
        topic = self.topics.get(channel) if channel else None
        if topic is None:
            return None
        response = client("sns").publish(TopicArn=topic, Subject=subject, Message=body)
        return str(response["MessageId"])

    def notify_all(self, record: AuditRecord) -> None:
        """Publish `record` to every channel (operator actions such as reverts)."""
        for channel in sorted(self.topics):
            self.notify(record, channel)


def publish(
    record: AuditRecord,
    audit: AuditStore,
    notifier: Notifier,
    channel: str | None,
    write: Callable[[AuditRecord], None] | None = None,
) -> None:
    """Write `record` (the source of truth; with `write` instead of a plain put), then tell
    `channel` about it (None: nobody). A message that cannot be sent is logged, never raised:
    the record stands."""
    (write or audit.put)(record)
    if channel is None:
        return
    try:
        notifier.notify(record, channel)
    except Exception:
        logger.exception("could not notify about %s", record.event_id)


def render(record: AuditRecord) -> tuple[str, str]:
    """Subject and body of the message for a record: what, which policy, what changed, why."""
    if record.escalated:
        headline = f"ESCALATION: {record.reason or record.outcome.value} on {record.target}"
    elif record.reverts:
        headline = f"Reverted {record.target}"
    elif record.outcome is Outcome.APPLIED:
        headline = f"Remediated {record.target}"
    elif record.dry_run:
        headline = f"Dry run: would remediate {record.target}"
    else:
        headline = f"Remediation {record.outcome.value} for {record.target}"
    lines = [
        headline,
        "",
        f"Alarm:   {record.alarm} ({record.alarm_state})",
        f"Policy:  {record.policy} -> {record.action}",
        f"Outcome: {record.outcome.value}" + (f" ({record.reason})" if record.reason else ""),
    ]
    if record.changes:
        lines += ["", "What changed:" if record.outcome is Outcome.APPLIED else "Planned:"]
        lines += [f"  - {change}" for change in record.changes]
    if record.escalated:
        lines += ["", _WHY_ESCALATED.get(record.reason or "", _WHY_ESCALATED["failed"])]
    if record.error:
        lines += ["", f"Details: {record.error}"]
    if record.diagnosis:
        lines += ["", f"Diagnosis: {record.diagnosis.get('reason', '')}"]
        for resource, figures in sorted(record.diagnosis.get("figures", {}).items()):
            lines.append(f"  {resource}: {json.dumps(figures, sort_keys=True)}")
        lines += [f"  note: {note}" for note in record.diagnosis.get("notes", [])]
    if record.reverts:
        lines += ["", f"This reverted action {record.reverts}."]
    if record.outcome is Outcome.APPLIED:
        lines += [
            "",
            f"Before: {json.dumps(record.before, sort_keys=True)}",
            f"After:  {json.dumps(record.after, sort_keys=True)}",
            "",
            f"To undo: remediate revert {record.event_id}",
        ]
    lines += ["", f"Event id: {record.event_id}"]
    # SNS subjects: at most 100 characters, printable ASCII, no line breaks.
    subject = f"[autoremediate] {headline}"[:100]
    return subject, "\n".join(lines)


def render_approval_request(
    request: ApprovalRequest, where: Where, approve_url: str, reject_url: str
) -> tuple[str, str]:
    """Subject and body of the approval email, in the approval page's words: what would
    change on which resource, where, why, until when; the links."""
    from remediators.core.approval_words import (
        changed_settings,
        headline,
        stage_in_words,
        target_in_words,
    )

    stage = stage_in_words(request)
    rows = changed_settings(request.plan.before, request.plan.after)
    width = max((len(setting) for setting, *_ in rows), default=0)
    lines = [
        headline(request),
        *([stage] if stage else []),
        "",
        f"Resource: {target_in_words(request.target)}",
        f"Where:    {where}",
        f"Why:      alarm {request.alarm}: {request.alarm_reason or 'in ALARM'}",
        f"Policy:   {request.policy}",
        "",
        "What changes (now -> after):",
        *[
            f"  {'*' if changed else ' '} {setting:<{width}}  {now} -> {after}"
            for setting, now, after, changed in rows
        ],
        *[f"  - {change}" for change in request.plan.changes],
        "",
        f"Decide by {request.deadline:%Y-%m-%d %H:%M} UTC; after that nothing is applied.",
        "Each link opens a page that asks you to confirm; it works once.",
        "",
        f"Approve: {approve_url}",
        "",
        f"Reject:  {reject_url}",
        "",
        f"Or: remediate approvals approve {request.approval_id}",
        f"Event id: {request.event_id}",
    ]
    # SNS subjects: at most 100 characters, printable ASCII, no line breaks.
    subject = f"[autoremediate] {headline(request)} {where.account} {where.region}"
    return subject[:100], "\n".join(lines)
