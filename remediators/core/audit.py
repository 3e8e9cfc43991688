"""The audit trail: one record per event, in the DynamoDB audit table the stack creates.

Every event ends as exactly one record: applied, skipped (with its reason), failed (with the
error) or invalid. Records are keyed by event id; the `by_target` index (target, recorded_at)
serves cooldown checks and history.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from remediators.core.aws import client

__all__ = ["AuditRecord", "AuditStore", "Outcome"]

# Index name and key attributes; the stack builds the table from these.
BY_TARGET_INDEX = "by_target"
TTL_ATTRIBUTE = "expires_at"
_JSON_FIELDS = ("before", "planned", "after", "changes")


class Outcome(StrEnum):
    """How an event ended."""

    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"
    INVALID = "invalid"


class AuditRecord(BaseModel):
    """What happened to one event: the decision, the change and who/what/why."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    outcome: Outcome
    reason: str | None = None
    alarm: str | None = None
    alarm_state: str | None = None
    policy: str | None = None
    action: str | None = None
    target: str | None = None
    dry_run: bool = False
    changes: list[str] = Field(default_factory=list)
    before: dict[str, Any] | None = None
    planned: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    error: str | None = None
    started_at: datetime
    recorded_at: datetime

    @property
    def duration_ms(self) -> int:
        """Time from receiving the event to recording the outcome."""
        return int((self.recorded_at - self.started_at).total_seconds() * 1000)


class AuditStore:
    """Reads and writes audit records in the audit table."""

    def __init__(self, table_name: str, retention: timedelta = timedelta(days=400)) -> None:
        self.table_name = table_name
        self.retention = retention

    def put(self, record: AuditRecord) -> None:
        """Write the record (the final one for its event id)."""
        client("dynamodb").put_item(TableName=self.table_name, Item=self._to_item(record))

    def get(self, event_id: str) -> AuditRecord | None:
        """The record of one event, if any."""
        item = (
            client("dynamodb")
            .get_item(
                TableName=self.table_name, Key={"event_id": {"S": event_id}}, ConsistentRead=True
            )
            .get("Item")
        )
        return self._from_item(item) if item else None

    def last_applied(self, target: str, policy: str, since: datetime) -> AuditRecord | None:
        """The latest change applied to `target` by `policy` at or after `since`."""
        response = client("dynamodb").query(
            TableName=self.table_name,
            IndexName=BY_TARGET_INDEX,
            KeyConditionExpression="#target = :target AND recorded_at >= :since",
            FilterExpression="outcome = :applied AND #policy = :policy",
            ExpressionAttributeNames={"#target": "target", "#policy": "policy"},
            ExpressionAttributeValues={
                ":target": {"S": target},
                ":since": {"S": since.isoformat()},
                ":applied": {"S": Outcome.APPLIED.value},
                ":policy": {"S": policy},
            },
            ScanIndexForward=False,
        )
        items = response.get("Items", [])
        return self._from_item(items[0]) if items else None

    def _to_item(self, record: AuditRecord) -> dict[str, Any]:
        data = record.model_dump(mode="json", exclude_none=True)
        item: dict[str, Any] = {}
        for key, value in data.items():
            if key in _JSON_FIELDS:
                item[key] = {"S": json.dumps(value, sort_keys=True)}
            elif isinstance(value, bool):
                item[key] = {"BOOL": value}
            else:
                item[key] = {"S": str(value)}
        item["duration_ms"] = {"N": str(record.duration_ms)}
        expires = record.recorded_at + self.retention
        item[TTL_ATTRIBUTE] = {"N": str(int(expires.timestamp()))}
        return item

    @staticmethod
    def _from_item(item: dict[str, Any]) -> AuditRecord:
        data: dict[str, Any] = {}
        for key, value in item.items():
            if key in _JSON_FIELDS:
                data[key] = json.loads(value["S"])
            elif "BOOL" in value:
                data[key] = value["BOOL"]
            elif "S" in value:
                data[key] = value["S"]
        return AuditRecord.model_validate(data)
