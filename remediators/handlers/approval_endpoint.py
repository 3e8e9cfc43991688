"""The approval endpoint behind the links in approval emails (a Lambda function URL).

Mail scanners open links, so a GET never decides anything: it checks the link and renders a
page with the planned change and two buttons. Only a POST of a button's signed form decides,
once, before the deadline. Every refused attempt (bad or tampered signature, expired, used,
incomplete form) gets a page saying why and an audit record, and changes nothing.
"""

from __future__ import annotations

import html
import json
import os
import uuid
from typing import Any
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.approval import (
    ApprovalRequest,
    ApprovalStore,
    LinkRefused,
    LinkSigner,
    Verdict,
    signing_key,
)
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client

logger = Logger()
app = LambdaFunctionUrlResolver()


# The endpoint's own settings: it reaches only the approvals, the audit trail and the key.
def _signer() -> LinkSigner:
    return LinkSigner(signing_key(os.environ["APPROVAL_SIGNING_SECRET"]))


def _store() -> ApprovalStore:
    return ApprovalStore(os.environ["APPROVALS_TABLE_NAME"])


@app.get("/")
def confirm_page() -> Response[str]:
    """Show what the link would decide, with signed buttons; decide nothing."""
    fields = app.current_event.query_string_parameters or {}
    try:
        approval_id, decision = _signer().check(fields, clock.now())
        approval = _store().get(approval_id)
        if approval is None:
            raise LinkRefused(404, "unknown", "there is no such approval")
        if approval["status"] != "pending":
            raise LinkRefused(409, "used", f"this approval was {approval['status']} already")
    except LinkRefused as refused:
        return _refused(refused, fields)
    return _page(200, "Confirm your decision", _confirm_body(approval, decision, fields["expires"]))


@app.post("/")
def decide() -> Response[str]:
    """Decide, once: record the decision and resume the waiting execution."""
    fields = dict(parse_qsl(app.current_event.decoded_body or ""))
    source_ip, user_agent = _caller()
    try:
        approval_id, verdict = _signer().check(fields, clock.now())
        decision, token = _store().decide(approval_id, verdict, source_ip, user_agent, clock.now())
    except LinkRefused as refused:
        return _refused(refused, fields)
    try:
        client("stepfunctions").send_task_success(
            taskToken=token, output=decision.model_dump_json()
        )
    except ClientError as error:
        ended = error.response["Error"]["Code"] in (
            "TaskTimedOut",
            "TaskDoesNotExist",
            "InvalidToken",
        )
        # The execution did not take the decision: do not keep it recorded as taken.
        _store().withdraw(decision, "expired" if ended else "pending")
        if not ended:
            raise
        return _refused(
            LinkRefused(410, "flow_ended", "the approval flow has ended already"), fields
        )
    logger.info("approval decided", extra=decision.model_dump(mode="json"))
    done = (
        "Approved: the change will be applied now."
        if verdict == "approve"
        else "Rejected: nothing will be changed."
    )
    return _page(
        200, "Decision recorded", f"<p>{done}</p><p>Approval {html.escape(approval_id)}.</p>"
    )


def _caller() -> tuple[str, str]:
    http = app.current_event.request_context.http
    return http.source_ip or "unknown", http.user_agent or "unknown"


def _refused(refused: LinkRefused, fields: dict[str, str]) -> Response[str]:
    """Answer a refused link with a page and an audit record; nothing else happens."""
    source_ip, user_agent = _caller()
    now = clock.now()
    record = AuditRecord(
        event_id=f"approval-refused-{uuid.uuid4()}",
        outcome=Outcome.INVALID,
        reason=f"approval_{refused.reason}",
        error=str(refused),
        approval={
            "id": fields.get("id"),
            "decision": fields.get("decision"),
            "method": app.current_event.request_context.http.method,
            "source_ip": source_ip,
            "user_agent": user_agent,
        },
        started_at=now,
        recorded_at=now,
    )
    AuditStore(os.environ["AUDIT_TABLE_NAME"]).put(record)
    logger.warning("approval link refused", extra=record.model_dump(mode="json", exclude_none=True))
    return _page(
        refused.status,
        "This link cannot be used",
        f"<p>{html.escape(str(refused))}.</p><p>Nothing was changed.</p>",
    )


def _confirm_body(approval: dict[str, Any], decision: Verdict, expires: str) -> str:
    request: ApprovalRequest = approval["request"]
    changes = "".join(f"<li>{html.escape(change)}</li>" for change in request.plan.changes)
    signer = _signer()
    buttons = ""
    for verdict, label in (("approve", "Approve the change"), ("reject", "Reject the change")):
        hidden = {
            "id": request.approval_id,
            "decision": verdict,
            "expires": expires,
            "sig": signer.signature(request.approval_id, verdict, int(expires)),
        }
        inputs = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in hidden.items()
        )
        autofocus = " autofocus" if verdict == decision else ""
        button = f'<button type="submit"{autofocus}>{label}</button>'
        buttons += f'<form method="post" action="/">{inputs}{button}</form>'
    return (
        f"<p><b>{html.escape(request.action)}</b> on <b>{html.escape(request.target)}</b></p>"
        f"<p>Alarm {html.escape(request.alarm)}: {html.escape(request.alarm_reason)}</p>"
        f"<ul>{changes}</ul>"
        f"<pre>before: {html.escape(json.dumps(request.plan.before, sort_keys=True))}\n"
        f"after:  {html.escape(json.dumps(request.plan.after, sort_keys=True))}</pre>"
        f"<p>Open until {approval['deadline']:%Y-%m-%d %H:%M:%S} UTC.</p>{buttons}"
    )


def _page(status: int, title: str, body: str) -> Response[str]:
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    # No caching, no framing: the page carries signed forms.
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}
    return Response(
        status_code=status, content_type=content_types.TEXT_HTML, body=page, headers=headers
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route a function-URL request to the page or the decision."""
    return app.resolve(event, context)
