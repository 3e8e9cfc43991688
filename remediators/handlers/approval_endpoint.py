"""The approval endpoint behind the links in approval emails (a Lambda function URL).

Mail scanners open links, so a GET never decides anything: it checks the link and renders a
page with the planned change and two buttons. Only a POST of a button's signed form decides,
once, before the deadline; the browser is then sent back to the link (303), which shows the
decision taken from then on. Every refused attempt (bad or tampered signature, expired,
incomplete form, a second decision) gets a page saying why and what to do instead, and an
audit record, and changes nothing.
"""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.approval import (
    ApprovalStore,
    LinkRefused,
    LinkSigner,
    Verdict,
    signing_key,
)
from remediators.core.approval_words import Where
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client
from remediators.handlers.approval_pages import confirm_page, decided_page, refused_page

logger = Logger()
app = LambdaFunctionUrlResolver()


# The endpoint's own settings: it reaches only the approvals, the audit trail and the key.
def _signer() -> LinkSigner:
    return LinkSigner(signing_key(os.environ["APPROVAL_SIGNING_SECRET"]))


def _store() -> ApprovalStore:
    return ApprovalStore(os.environ["APPROVALS_TABLE_NAME"])


# The outcome a decided approval's link shows from then on (reload, Back, reopening it).
_DECIDED = ("approved", "rejected")
# What a person can do instead, per reason a link is refused.
_NEXT_STEP = {
    "incomplete": "Open the link from the approval email again, whole, or decide with "
    "`remediate approvals approve ID` (or `reject ID`).",
    "bad_decision": "Use one of the two links in the approval email.",
    "bad_signature": "Use the link exactly as the approval email has it; a changed link is "
    "refused.",
    "expired": "The time to decide has passed and the change was not applied. If it is "
    "still needed, the alarm asks again when it fires again.",
    "unknown": "`remediate approvals list` shows the approvals waiting for a decision.",
    "used": "This approval has ended; nothing more can be decided here. `remediate history` "
    "shows what happened.",
    "flow_ended": "The flow stopped waiting (it timed out or was stopped); nothing was "
    "applied. `remediate history` shows what happened.",
}


def _where(approval: dict[str, Any]) -> Where:
    return Where.of(approval["execution_arn"], os.environ.get("STACK_NAME", ""))


@app.get("/favicon.ico")
def favicon() -> Response[str]:
    """Nothing, at once (the pages name an empty icon; an old browser may still ask)."""
    return Response(status_code=204, body="", headers={"Cache-Control": "max-age=86400"})


@app.get("/")
def confirm() -> Response[str]:
    """Show what the link would decide, with signed buttons, and decide nothing; or, once the
    approval is decided, the decision taken."""
    fields = app.current_event.query_string_parameters or {}
    try:
        approval_id, _ = _signer().check(fields, clock.now())
    except LinkRefused as refused:
        # Signed but past its expiry (the signature is checked first): a decided approval
        # still shows its outcome.
        approval = _store().get(fields["id"]) if refused.reason == "expired" else None
        if approval is not None and approval["status"] in _DECIDED:
            return decided_page(approval, _where(approval))
        return _refused(refused, fields)
    approval = _store().get(approval_id)
    if approval is None:
        return _refused(LinkRefused(404, "unknown", "there is no such approval"), fields)
    if approval["status"] in _DECIDED:
        return decided_page(approval, _where(approval))
    if approval["status"] != "pending":
        return _refused(
            LinkRefused(
                409, "used", f"this approval ended without a decision: {approval['status']}"
            ),
            fields,
        )
    signer, expires = _signer(), fields["expires"]
    verdicts: tuple[Verdict, ...] = ("approve", "reject")
    forms: dict[Verdict, dict[str, str]] = {
        verdict: {
            "id": approval_id,
            "decision": verdict,
            "expires": expires,
            "sig": signer.signature(approval_id, verdict, int(expires)),
        }
        for verdict in verdicts
    }
    return confirm_page(approval, _where(approval), clock.now(), forms)


@app.post("/")
def decide() -> Response[str]:
    """Decide, once: record the decision, resume the waiting execution, and send the browser
    to the link's page, which shows the decision from then on (Post/Redirect/Get: a reload
    does not post again)."""
    fields = dict(parse_qsl(app.current_event.decoded_body or ""))
    source_ip, user_agent = _caller()
    try:
        approval_id, verdict = _signer().check(fields, clock.now())
        decision, token = _store().decide(approval_id, verdict, source_ip, user_agent, clock.now())
    except LinkRefused as refused:
        if refused.reason == "used":  # posted twice (a double click, a resent form)
            approval = _store().get(fields["id"])
            if approval is not None and approval["status"] in _DECIDED:
                _record_refusal(refused, fields)
                return _see(fields)
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
    return _see(fields)


def _see(fields: dict[str, str]) -> Response[str]:
    """303 See Other to the signed link's page (GET), which shows the decision."""
    link = {name: fields[name] for name in ("id", "decision", "expires", "sig")}
    return Response(
        status_code=303,
        body="",
        headers={"Location": f"/?{urlencode(link)}", "Cache-Control": "no-store"},
    )


def _caller() -> tuple[str, str]:
    http = app.current_event.request_context.http
    return http.source_ip or "unknown", http.user_agent or "unknown"


def _refused(refused: LinkRefused, fields: dict[str, str]) -> Response[str]:
    """Answer a refused link with a page and an audit record; nothing else happens."""
    _record_refusal(refused, fields)
    return refused_page(refused.status, str(refused), _NEXT_STEP.get(refused.reason, ""))


def _record_refusal(refused: LinkRefused, fields: dict[str, str]) -> None:
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


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route a function-URL request to the page or the decision."""
    return app.resolve(event, context)
