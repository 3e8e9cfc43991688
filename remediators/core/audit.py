"""The audit trail: one record per event, in the DynamoDB audit table the stack creates.

Every event ends as exactly one record: applied, skipped (with its reason), failed (with the
error) or invalid. Records are keyed by event id; the `by_target` index (target, recorded_at)
serves history; `by_alarm` (alarm, recorded_at) finds the action a recovering alarm should be
credited to. The guardrails keep their own state (`guardrails`): an index is eventually
consistent, and a guardrail must see the change recorded a moment ago.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from remediators.core.aws import client

__all__ = ["AuditRecord", "AuditStore", "Outcome", "iso_time"]

# Index name and key attributes; the stack builds the table from these.
BY_TARGET_INDEX = "by_target"
BY_ALARM_INDEX = "by_alarm"
TTL_ATTRIBUTE = "expires_at"
_JSON_FIELDS = ("before", "planned", "after", "changes", "target_spec", "approval", "diagnosis")


def iso_time(moment: datetime) -> str:
    """Fixed-width UTC with microseconds, so that stored timestamps compare as strings."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


Timestamp = Annotated[datetime, PlainSerializer(iso_time, return_type=str, when_used="json")]


# The reason of a record that undid changes whose time ran out (see `core.expiry`).
EXPIRED_REASON = "expired"


class Outcome(StrEnum):
    """How an event ended."""

    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"
    # Planned, waiting for an operator's decision in the approval flow (which then records
    # the final outcome under the same event id).
    PENDING = "pending"
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
    # The target as the action's model has it, so `remediate revert` can rebuild the action.
    target_spec: dict[str, Any] | None = None
    dry_run: bool = False
    # Notified as an escalation: a person must look (at cap, circuit open, failed, unverified).
    escalated: bool = False
    # Set on a revert: the event id of the action it undid.
    reverts: str | None = None
    # Set on an applied action when its alarm returns to OK.
    recovered_at: Timestamp | None = None
    recovery_seconds: int | None = None
    # Set on an applied action at its verification deadline: was its alarm out of ALARM?
    verified: bool | None = None
    # Set when the change needed approval: the approval id, and who decided what, when.
    approval: dict[str, Any] | None = None
    # Set when the policy's action diagnoses (`api.diagnose`): the action it chose (or none),
    # that action's target and params, the figures behind the choice, and why.
    diagnosis: dict[str, Any] | None = None
    changes: list[str] = Field(default_factory=list)
    before: dict[str, Any] | None = None
    planned: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    error: str | None = None
    started_at: Timestamp
    recorded_at: Timestamp

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
        client("dynamodb").put_item(TableName=self.table_name, Item=self.to_item(record))

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

    def remembered_since(self, target: str, since: datetime) -> list[AuditRecord]:
        """The records on `target` at or after `since` that the guardrail state remembers
        (applied, pending, failed), newest first: read once per resource, to carry over what
        was recorded before that state (see `guardrails.GuardrailState.carried_over`)."""
        return self._query(
            BY_TARGET_INDEX,
            "#key = :key AND recorded_at >= :since",
            {"#key": "target"},
            {
                ":key": {"S": target},
                ":since": {"S": iso_time(since)},
                ":applied": {"S": Outcome.APPLIED.value},
                ":pending": {"S": Outcome.PENDING.value},
                ":failed": {"S": Outcome.FAILED.value},
            },
            filter_expression="outcome IN (:applied, :pending, :failed)",
        )

    def last_applied_for_alarm(self, alarm: str, since: datetime) -> AuditRecord | None:
        """The latest change a policy applied because of `alarm`, at or after `since`."""
        records = self._query(
            BY_ALARM_INDEX,
            "#key = :key AND recorded_at >= :since",
            {"#key": "alarm"},
            {":key": {"S": alarm}, ":since": {"S": iso_time(since)}},
            applied_only=True,
        )
        return records[0] if records else None

    def mark_recovered(self, event_id: str, at: datetime, seconds: int) -> bool:
        """Record that the alarm behind an applied change returned to OK (only the first time)."""
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={"event_id": {"S": event_id}},
                UpdateExpression="SET recovered_at = :at, recovery_seconds = :seconds",
                ConditionExpression="attribute_exists(event_id) AND "
                "attribute_not_exists(recovered_at)",
                ExpressionAttributeValues={
                    ":at": {"S": iso_time(at)},
                    ":seconds": {"S": str(seconds)},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_verified(self, event_id: str, resolved: bool) -> None:
        """Record the verification of an applied action (and an escalation if unresolved)."""
        expression = "SET verified = :verified"
        values: dict[str, Any] = {":verified": {"BOOL": resolved}}
        if not resolved:
            expression += ", escalated = :escalated"
            values[":escalated"] = {"BOOL": True}
        client("dynamodb").update_item(
            TableName=self.table_name,
            Key={"event_id": {"S": event_id}},
            UpdateExpression=expression,
            ConditionExpression="attribute_exists(event_id)",
            ExpressionAttributeValues=values,
        )

    def history(self, since: datetime, target: str | None = None) -> list[AuditRecord]:
        """Records since `since`, newest first; of one target, or of all (a scan)."""
        if target is not None:
            return self._query(
                BY_TARGET_INDEX,
                "#key = :key AND recorded_at >= :since",
                {"#key": "target"},
                {":key": {"S": target}, ":since": {"S": iso_time(since)}},
            )
        records: list[AuditRecord] = []
        paginator = client("dynamodb").get_paginator("scan")
        for page in paginator.paginate(
            TableName=self.table_name,
            FilterExpression="recorded_at >= :since",
            ExpressionAttributeValues={":since": {"S": iso_time(since)}},
        ):
            records += [self._from_item(item) for item in page.get("Items", [])]
        return sorted(records, key=lambda record: record.recorded_at, reverse=True)

    def _query(
        self,
        index: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        *,
        applied_only: bool = False,
        filter_expression: str | None = None,
    ) -> list[AuditRecord]:
        options: dict[str, Any] = {}
        if filter_expression:
            options["FilterExpression"] = filter_expression
        if applied_only:  # changes made by a policy: reverts and lapsed blocks are not
            options["FilterExpression"] = (
                "outcome = :applied AND attribute_not_exists(reverts) AND "
                "(attribute_not_exists(reason) OR reason <> :expired)"
            )
            values = {
                **values,
                ":applied": {"S": Outcome.APPLIED.value},
                ":expired": {"S": EXPIRED_REASON},
            }
        paginator = client("dynamodb").get_paginator("query")
        records: list[AuditRecord] = []
        for page in paginator.paginate(
            TableName=self.table_name,
            IndexName=index,
            KeyConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            **options,
        ):
            records += [self._from_item(item) for item in page.get("Items", [])]
        return records

    def to_item(self, record: AuditRecord) -> dict[str, Any]:
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
