"""Operator approval of a planned change: the request, signed links, and the decision store.

A change that needs approval runs in the approval state machine: the remediator plans it and
starts an execution; the flow's `request` task stores the pending approval (with the Step
Functions task token, which never leaves the server) and emails two signed links; the
approval endpoint turns a POST from one of them into the decision, once.

A link carries the approval id, the decision, its expiry and an HMAC-SHA256 of the three
under a key the stack keeps in Secrets Manager. Changing any of them breaks the signature, so
a link cannot be moved to another approval or turned from reject into approve.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal
from urllib.parse import urlencode

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from remediators.core.aws import client
from remediators.core.registry import Plan

__all__ = [
    "ApprovalRequest",
    "ApprovalStore",
    "Decision",
    "LinkRefused",
    "LinkSigner",
    "Verdict",
    "approval_id_for",
    "signing_key",
    "start_approval",
    "start_execution",
]

Verdict = Literal["approve", "reject"]


def approval_id_for(event_id: str) -> str:
    """One approval per event: a retried event finds its execution instead of a second one."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:32]


class ApprovalRequest(BaseModel):
    """The input of an approval execution: what would change, why, and until when."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    event_id: str
    policy: str
    action: str
    alarm: str
    alarm_reason: str
    target: str
    target_spec: dict[str, Any]
    # The params of `action` when a diagnosis chose it (the policy's action diagnoses); None:
    # `action` is the policy's own, run with the policy's params.
    params: dict[str, Any] | None = None
    plan: Plan
    requested_at: datetime
    deadline: datetime
    # Step Functions reads the callback task's timeout from here (TimeoutSecondsPath).
    timeout_seconds: int = Field(ge=1)
    # Which of a restore's two approvals this is (None: a change with one approval).
    stage: Literal["restore", "cutover"] | None = None


class Decision(BaseModel):
    """What the endpoint sends back to the waiting execution: who decided what, and when."""

    model_config = ConfigDict(frozen=True)

    approval_id: str
    decision: Verdict
    decided_at: datetime
    source_ip: str
    user_agent: str


class LinkRefused(Exception):
    """A link or form that must not decide anything; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class LinkSigner:
    """Signs and checks approval links."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the approval signing key must have at least 32 bytes")
        self._key = key

    def signature(self, approval_id: str, decision: str, expires: int) -> str:
        message = f"{approval_id}\n{decision}\n{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def link(self, base_url: str, approval_id: str, decision: Verdict, expires: int) -> str:
        query = {
            "id": approval_id,
            "decision": decision,
            "expires": str(expires),
            "sig": self.signature(approval_id, decision, expires),
        }
        return f"{base_url.rstrip('/')}/?{urlencode(query)}"

    def check(self, fields: dict[str, str], now: datetime) -> tuple[str, Verdict]:
        """The (approval id, decision) of a signed, unexpired link's fields, else LinkRefused."""
        missing = [name for name in ("id", "decision", "expires", "sig") if not fields.get(name)]
        if missing:
            raise LinkRefused(400, "incomplete", f"the link lacks {', '.join(missing)}")
        approval_id, decision = fields["id"], fields["decision"]
        if decision not in ("approve", "reject"):
            raise LinkRefused(400, "bad_decision", f"unknown decision {decision!r}")
        try:
            expires = int(fields["expires"])
        except ValueError:
            raise LinkRefused(400, "incomplete", "the link's expiry is not a number") from None
        expected = self.signature(approval_id, decision, expires)
        if not hmac.compare_digest(expected.encode(), fields["sig"].encode()):
            raise LinkRefused(403, "bad_signature", "the link's signature does not match")
        if now.timestamp() >= expires:
            raise LinkRefused(410, "expired", "the link has expired")
        return approval_id, decision  # type: ignore[return-value]  # checked just above


@cache
def signing_key(secret_id: str) -> bytes:
    """The HMAC key from Secrets Manager (read once per execution environment)."""
    secret = client("secretsmanager").get_secret_value(SecretId=secret_id)
    return str(secret["SecretString"]).encode()


def start_approval(state_machine_arn: str, request: ApprovalRequest) -> str:
    """Start the approval execution for `request`. Returns the execution ARN."""
    return start_execution(state_machine_arn, request.approval_id, request.model_dump_json())


def start_execution(state_machine_arn: str, name: str, input_json: str) -> str:
    """Start an execution named `name` (one per event); one already started under that name (a
    retried event) counts as started. Returns the execution ARN."""
    execution_arn = state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name, input=input_json
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
    return execution_arn


class ApprovalStore:
    """Pending approvals and their decisions, one item per approval id.

    The task token lives only here. A decision is a conditional update from `pending`, so a
    link works once, and only before the deadline.
    """

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def open(self, request: ApprovalRequest, task_token: str, execution_arn: str) -> None:
        """Store a pending approval (again, with the new token, if the request task is
        retried before anyone decided)."""
        item = {
            "approval_id": {"S": request.approval_id},
            "status": {"S": "pending"},
            "task_token": {"S": task_token},
            "execution_arn": {"S": execution_arn},
            "deadline": {"N": str(int(request.deadline.timestamp()))},
            "request": {"S": request.model_dump_json()},
            # Kept a month after the deadline for `remediate approvals list --all`.
            "expires_at": {"N": str(int((request.deadline + timedelta(days=30)).timestamp()))},
        }
        try:
            client("dynamodb").put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(approval_id) OR #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":pending": {"S": "pending"}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Decided already: the retried request must not reopen it.

    def decide(
        self, approval_id: str, verdict: Verdict, source_ip: str, user_agent: str, now: datetime
    ) -> tuple[Decision, str]:
        """Record the decision once; returns it with the task token. LinkRefused if the
        approval is unknown, decided already, or past its deadline."""
        try:
            item = client("dynamodb").update_item(
                TableName=self.table_name,
                Key={"approval_id": {"S": approval_id}},
                UpdateExpression="SET #status = :verdict, decided_at = :now, "
                "source_ip = :ip, user_agent = :agent",
                ConditionExpression="#status = :pending AND deadline > :epoch",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":verdict": {"S": _STATUS[verdict]},
                    ":pending": {"S": "pending"},
                    ":now": {"S": now.isoformat()},
                    ":epoch": {"N": str(int(now.timestamp()))},
                    ":ip": {"S": source_ip},
                    ":agent": {"S": user_agent},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise self._why_refused(approval_id, now) from None
        decision = Decision(
            approval_id=approval_id,
            decision=verdict,
            decided_at=now,
            source_ip=source_ip,
            user_agent=user_agent,
        )
        return decision, item["task_token"]["S"]

    def withdraw(self, decision: Decision, status: str = "pending") -> None:
        """Take back a recorded decision the waiting execution did not receive: back to
        `pending` (the link may be used again) or, when the flow has ended, to `status`.
        Only this decision is taken back (same verdict, same time)."""
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={"approval_id": {"S": decision.approval_id}},
                UpdateExpression="SET #status = :status REMOVE decided_at, source_ip, user_agent",
                ConditionExpression="#status = :decided AND decided_at = :at",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":status": {"S": status},
                    ":decided": {"S": _STATUS[decision.decision]},
                    ":at": {"S": decision.decided_at.isoformat()},
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def close(self, approval_id: str, status: str) -> None:
        """Mark a still-pending approval as ended without a decision (timed out, failed)."""
        try:
            client("dynamodb").update_item(
                TableName=self.table_name,
                Key={"approval_id": {"S": approval_id}},
                UpdateExpression="SET #status = :status",
                ConditionExpression="#status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": {"S": status}, ":pending": {"S": "pending"}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def get(self, approval_id: str) -> dict[str, Any] | None:
        """The approval's status, request and decision, without the task token."""
        item = (
            client("dynamodb")
            .get_item(
                TableName=self.table_name,
                Key={"approval_id": {"S": approval_id}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        return _public(item) if item else None

    def list(self, status: str | None = "pending") -> list[dict[str, Any]]:
        """Approvals (pending ones by default), oldest deadline first. A small table: scanned."""
        kwargs: dict[str, Any] = {"TableName": self.table_name}
        if status:
            kwargs |= {
                "FilterExpression": "#status = :status",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":status": {"S": status}},
            }
        items = []
        for page in client("dynamodb").get_paginator("scan").paginate(**kwargs):
            items += [_public(item) for item in page["Items"]]
        return sorted(items, key=lambda item: item["deadline"])

    def _why_refused(self, approval_id: str, now: datetime) -> LinkRefused:
        approval = self.get(approval_id)
        if approval is None:
            return LinkRefused(404, "unknown", "there is no such approval")
        if approval["status"] != "pending":
            by = f" from {approval['source_ip']}" if approval.get("source_ip") else ""
            return LinkRefused(
                409, "used", f"this approval was {approval['status']} already{by}; links work once"
            )
        return LinkRefused(410, "expired", "the decision window has closed")


_STATUS: dict[Verdict, str] = {"approve": "approved", "reject": "rejected"}


def _public(item: dict[str, Any]) -> dict[str, Any]:
    request = ApprovalRequest.model_validate_json(item["request"]["S"])
    return {
        "approval_id": item["approval_id"]["S"],
        "status": item["status"]["S"],
        "deadline": datetime.fromtimestamp(int(item["deadline"]["N"]), tz=UTC),
        "execution_arn": item["execution_arn"]["S"],
        "request": request,
        "decided_at": item.get("decided_at", {}).get("S"),
        "source_ip": item.get("source_ip", {}).get("S"),
        "user_agent": item.get("user_agent", {}).get("S"),
    }
