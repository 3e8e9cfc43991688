"""Notifications: one readable SNS message per applied change, dry run or failure."""

from __future__ import annotations

import json

from remediators.core.audit import AuditRecord, Outcome
from remediators.core.aws import client

__all__ = ["Notifier", "render"]


class Notifier:
    """Publishes audit records to the SNS topic of a notification channel."""

    def __init__(self, topics: dict[str, str]) -> None:
        self.topics = topics

    def notify(self, record: AuditRecord, channel: str | None) -> str | None:
        """Publish `record` to `channel`'s topic; returns the message id, None if no topic."""
        topic = self.topics.get(channel) if channel else None
        if topic is None:
            return None
        subject, body = render(record)
        response = client("sns").publish(TopicArn=topic, Subject=subject, Message=body)
        return str(response["MessageId"])


def render(record: AuditRecord) -> tuple[str, str]:
    """Subject and body of the message for a record: what, which policy, what changed, why."""
    if record.outcome is Outcome.APPLIED:
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
    if record.error:
        lines += ["", f"Error: {record.error}"]
    if record.outcome is Outcome.APPLIED:
        lines += [
            "",
            "To undo, restore the before-state recorded in the audit table:",
            json.dumps(record.before, sort_keys=True),
        ]
    lines += ["", f"Event id: {record.event_id}"]
    # SNS subjects: at most 100 characters, printable ASCII, no line breaks.
    subject = f"[autoremediate] {headline}"[:100]
    return subject, "\n".join(lines)
