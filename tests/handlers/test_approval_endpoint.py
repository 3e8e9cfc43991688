"""The approval endpoint on moto, with the deployed stack's approvals table, audit table and
signing key, and a real execution waiting for each approval's task token: a signed POST
decides once and resumes the execution; a GET only confirms; every refused link decides
nothing, says why, and leaves one audit record of the attempt."""

from __future__ import annotations

import html
import importlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.approval import (
    ApprovalRequest,
    ApprovalStore,
    Decision,
    LinkRefused,
    LinkSigner,
    Verdict,
    signing_key,
)
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client, reset_clients
from remediators.core.registry import Plan
from remediators.simulator.lambda_runtime import LambdaContext, function_url_event
from stacks import names

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
OPERATOR = ("198.51.100.7", "Mozilla/5.0 (operator)")
SCANNER = ("203.0.113.9", "MailScanner/2.1 (link prefetch)")
BASE_URL = "https://abc123.lambda-url.us-east-1.on.aws"
_WAIT_SECONDS = 10.0


# --- a waiting execution -------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A pending approval whose execution waits for its task token."""

    request: ApprovalRequest
    execution_arn: str

    @property
    def id(self) -> str:
        return self.request.approval_id

    @property
    def expires(self) -> int:
        """The links' expiry, as the flow signs them: the approval's deadline."""
        return int(self.request.deadline.timestamp())


class Flow:
    """A Standard state machine on moto's interpreter whose only task sends its token to an
    SQS queue and waits for it, as the approval flow's request task does."""

    def __init__(self, store: ApprovalStore) -> None:
        self.store = store
        self.sfn = boto3.client("stepfunctions")
        self.sqs = boto3.client("sqs")
        self.queue_url = self.sqs.create_queue(QueueName="approval-tokens")["QueueUrl"]
        role = boto3.client("iam").create_role(
            RoleName="approval-waiter", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        definition = {
            "StartAt": "WaitForDecision",
            "States": {
                "WaitForDecision": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {
                        "QueueUrl": self.queue_url,
                        "MessageBody": {
                            "token.$": "$$.Task.Token",
                            "execution.$": "$$.Execution.Id",
                        },
                    },
                    "End": True,
                }
            },
        }
        self.state_machine_arn = self.sfn.create_state_machine(
            name="approval-waiter", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
        self.executions: list[str] = []
        self._tokens: dict[str, str] = {}

    def open(self, deadline: timedelta = timedelta(hours=4)) -> Waiting:
        """Start an execution, wait (bounded) for its task token, store the pending approval."""
        now = clock.now()
        approval_id = uuid.uuid4().hex
        request = ApprovalRequest(
            approval_id=approval_id,
            event_id=f"event-{approval_id}",
            policy="orders-throttling",
            action="dynamodb.scale_capacity",
            alarm="orders-ddb-throttle",
            alarm_reason="Threshold Crossed: 3 datapoints > 10",
            target="dynamodb:table/orders",
            target_spec={"table": "orders"},
            plan=Plan(
                before={"read": 5, "write": 5},
                after={"read": 10, "write": 10},
                changes=["table read capacity 5 -> 10", "table write capacity 5 -> 10"],
            ),
            requested_at=now,
            deadline=now + deadline,
            timeout_seconds=int(deadline.total_seconds()),
        )
        execution_arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=approval_id,
            input=request.model_dump_json(),
        )["executionArn"]
        self.executions.append(execution_arn)
        self.store.open(request, self._token(execution_arn), execution_arn)
        return Waiting(request, execution_arn)

    def status(self, waiting: Waiting) -> str:
        return str(self.sfn.describe_execution(executionArn=waiting.execution_arn)["status"])

    def finished(self, waiting: Waiting) -> dict[str, Any]:
        """The execution once it is no longer RUNNING (bounded wait)."""
        limit = time.monotonic() + _WAIT_SECONDS
        while self.status(waiting) == "RUNNING":
            assert time.monotonic() < limit, f"{waiting.execution_arn} still RUNNING"
            time.sleep(0.02)
        description: dict[str, Any] = self.sfn.describe_execution(
            executionArn=waiting.execution_arn
        )
        return description

    def stop_running(self) -> None:
        for execution_arn in self.executions:
            if self.sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
                self.sfn.stop_execution(executionArn=execution_arn)

    def _token(self, execution_arn: str) -> str:
        limit = time.monotonic() + _WAIT_SECONDS
        while execution_arn not in self._tokens:
            assert time.monotonic() < limit, f"{execution_arn} sent no task token"
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10
            ).get("Messages", [])
            for message in messages:
                body = json.loads(message["Body"])
                self._tokens[body["execution"]] = body["token"]
            if not messages:
                time.sleep(0.02)
        return self._tokens[execution_arn]


# --- requests as the function URL delivers them ----------------------------------------------


def _event(
    method: str,
    *,
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    caller: tuple[str, str] = OPERATOR,
    base64_body: bool = False,
    path: str = "/",
) -> dict[str, Any]:
    """A function-URL request, as the simulator sends it."""
    source_ip, user_agent = caller
    url = f"{BASE_URL}{path}?{urlencode(query)}" if query else f"{BASE_URL}{path}"
    return function_url_event(
        method, url, form, source_ip=source_ip, user_agent=user_agent, base64_body=base64_body
    )


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    headers: dict[str, str]


class _Forms(HTMLParser):
    """The forms of a page: method, action, hidden fields, and whether its button autofocuses."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({**attributes, "fields": {}, "autofocus": False})
        elif tag == "input" and attributes.get("type") == "hidden" and self.forms:
            self.forms[-1]["fields"][attributes["name"]] = attributes["value"]
        elif tag == "button" and self.forms:
            self.forms[-1]["autofocus"] = "autofocus" in attributes


def _forms(page: Page) -> dict[str, dict[str, Any]]:
    """The page's forms by the decision they carry."""
    parser = _Forms()
    parser.feed(page.body)
    return {form["fields"]["decision"]: form for form in parser.forms}


def _tampered(signature: str) -> str:
    """The signature with one character (in the middle) changed."""
    middle = len(signature) // 2
    replacement = "A" if signature[middle] != "A" else "B"
    return signature[:middle] + replacement + signature[middle + 1 :]


# --- the endpoint, deployed ------------------------------------------------------------------


class Endpoint:
    """The deployed endpoint's handler with its tables and key, and the flow it resumes."""

    def __init__(self, handler: Handler, variables: dict[str, str], flow: Flow) -> None:
        self.handler = handler
        self.flow = flow
        self.store = flow.store
        self.audit = AuditStore(variables["AUDIT_TABLE_NAME"])
        secret = boto3.client("secretsmanager").get_secret_value(
            SecretId=variables["APPROVAL_SIGNING_SECRET"]
        )
        # The key the flow's request task signs the emailed links with.
        self.signer = LinkSigner(secret["SecretString"].encode())
        # The SendTaskSuccess calls the handler makes (through its cached client).
        self.sent: list[dict[str, Any]] = []
        client("stepfunctions").meta.events.register(
            "before-call.sfn.SendTaskSuccess",
            lambda params, **_: self.sent.append(json.loads(params["body"])),
        )

    def call(self, event: dict[str, Any]) -> Page:
        result = self.handler(event, LambdaContext())
        headers = {key.lower(): str(value) for key, value in (result.get("headers") or {}).items()}
        return Page(int(result["statusCode"]), str(result["body"]), headers)

    def get(self, fields: dict[str, str], caller: tuple[str, str] = OPERATOR) -> Page:
        """Open a link with these query fields."""
        return self.call(_event("GET", query=fields, caller=caller))

    def post(
        self, form: dict[str, str], caller: tuple[str, str] = OPERATOR, base64_body: bool = False
    ) -> Page:
        """Post a form with these fields."""
        return self.call(_event("POST", form=form, caller=caller, base64_body=base64_body))

    def send(self, method: str, fields: dict[str, str]) -> Page:
        """The fields as a link opened (GET) or a form posted (POST)."""
        return self.get(fields) if method == "GET" else self.post(fields)

    def link(self, approval_id: str, decision: str, expires: int) -> dict[str, str]:
        """The fields of a signed link (and of the confirm page's button for it)."""
        url = self.signer.link(BASE_URL, approval_id, decision, expires)  # type: ignore[arg-type]
        return dict(parse_qsl(urlsplit(url).query))

    def records(self) -> list[AuditRecord]:
        """Every record in the audit table."""
        return self.audit.history(datetime(2000, 1, 1, tzinfo=UTC))

    def fail_send_task_success(self, code: str) -> None:
        """Make the handler's SendTaskSuccess calls fail with the real botocore error."""

        def refuse(**_: Any) -> None:
            raise ClientError({"Error": {"Code": code, "Message": "refused"}}, "SendTaskSuccess")

        client("stepfunctions").meta.events.register("before-call.sfn.SendTaskSuccess", refuse)

    def assert_refused(
        self,
        page: Page,
        status: int,
        reason: str,
        *,
        method: str,
        fields: dict[str, str],
        caller: tuple[str, str] = OPERATOR,
        message: str | None = None,
    ) -> AuditRecord:
        """The page says why and that nothing changed; one audit record of the attempt."""
        assert page.status == status, page.body
        assert "This link cannot be used" in page.body
        assert "Nothing was changed." in page.body
        assert "<form" not in page.body
        assert page.headers["cache-control"] == "no-store"
        [record] = self.records()
        assert record.outcome is Outcome.INVALID
        assert record.reason == f"approval_{reason}"
        assert record.event_id.startswith("approval-refused-")
        assert record.approval == {
            "id": fields.get("id"),
            "decision": fields.get("decision"),
            "method": method,
            "source_ip": caller[0],
            "user_agent": caller[1],
        }
        if message is not None:
            assert record.error == message
            assert f"<p>{html.escape(message)}.</p>" in page.body
        return record

    def assert_undecided(self, *waiting: Waiting) -> None:
        """No SendTaskSuccess; each approval still pending, without a decider; each
        execution still waiting."""
        assert self.sent == []
        for each in waiting:
            approval = self.store.get(each.id)
            assert approval is not None
            assert approval["status"] == "pending"
            assert approval["decided_at"] is None
            assert (approval["source_ip"], approval["user_agent"]) == (None, None)
            assert self.flow.status(each) == "RUNNING"


@pytest.fixture
def endpoint(deployed: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoint]:
    """The deployed endpoint in a fresh execution environment (its settings from the deployed
    function's environment; the key read afresh: each deployment generates its own), with
    executions run on moto's interpreter for this test."""
    from moto.core.config import default_user_config

    import remediators.handlers.approval_endpoint as module

    name = deployed.outputs["ApprovalEndpointFunction"]
    variables: dict[str, str] = boto3.client("lambda").get_function_configuration(
        FunctionName=name
    )["Environment"]["Variables"]
    assert variables["APPROVALS_TABLE_NAME"] == deployed.outputs["ApprovalsTableName"]
    assert variables["APPROVAL_SIGNING_SECRET"] == names.approval_signing_secret_name(
        names.STACK_NAME
    )
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", name)
    monkeypatch.setitem(default_user_config, "stepfunctions", {"execute_state_machine": True})
    signing_key.cache_clear()
    flow = Flow(ApprovalStore(variables["APPROVALS_TABLE_NAME"]))
    yield Endpoint(importlib.reload(module).lambda_handler, variables, flow)
    flow.stop_running()
    signing_key.cache_clear()


# --- a valid decision ------------------------------------------------------------------------


def test_a_signed_approve_post_decides_once_and_resumes_the_execution(
    endpoint: Endpoint,
) -> None:
    waiting = endpoint.flow.open()
    form = endpoint.link(waiting.id, "approve", waiting.expires)

    answer = endpoint.post(form)

    # Post/Redirect/Get: back to the link, which shows the decision from now on.
    assert (answer.status, answer.body) == (303, "")
    assert answer.headers["location"] == f"/?{urlencode(form)}"
    page = endpoint.get(form)
    assert page.status == 200, page.body
    assert "Approved: the change is being applied." in page.body
    assert f"<dd>{OPERATOR[0]}</dd>" in page.body
    assert "<form" not in page.body
    approval = endpoint.store.get(waiting.id)
    assert approval is not None
    assert approval["status"] == "approved"
    assert (approval["source_ip"], approval["user_agent"]) == OPERATOR
    execution = endpoint.flow.finished(waiting)
    assert execution["status"] == "SUCCEEDED"
    decision = Decision.model_validate_json(execution["output"])
    assert (decision.approval_id, decision.decision) == (waiting.id, "approve")
    assert (decision.source_ip, decision.user_agent) == OPERATOR
    assert decision.decided_at.isoformat() == approval["decided_at"]
    assert len(endpoint.sent) == 1
    assert endpoint.records() == []  # the flow records the decision, not the endpoint

    replay = endpoint.post(form, caller=SCANNER)

    # A second post decides nothing, is recorded as refused, and lands on the outcome too.
    assert (replay.status, replay.headers["location"]) == (303, f"/?{urlencode(form)}")
    [record] = endpoint.records()
    assert (record.outcome, record.reason) == (Outcome.INVALID, "approval_used")
    assert record.error == f"this approval was approved already from {OPERATOR[0]}; links work once"
    assert len(endpoint.sent) == 1
    after = endpoint.store.get(waiting.id)
    assert after == approval
    assert endpoint.flow.finished(waiting)["output"] == execution["output"]


def test_a_signed_reject_post_records_the_rejection_and_resumes_the_execution(
    endpoint: Endpoint,
) -> None:
    waiting = endpoint.flow.open()

    link = endpoint.link(waiting.id, "reject", waiting.expires)
    assert endpoint.post(link).status == 303

    page = endpoint.get(link)
    assert page.status == 200, page.body
    assert "Rejected: nothing will be changed." in page.body
    approval = endpoint.store.get(waiting.id)
    assert approval is not None
    assert (approval["status"], approval["source_ip"], approval["user_agent"]) == (
        "rejected",
        *OPERATOR,
    )
    execution = endpoint.flow.finished(waiting)
    assert execution["status"] == "SUCCEEDED"
    output = json.loads(execution["output"])
    assert output["decision"] == "reject"
    assert (output["approval_id"], output["source_ip"], output["user_agent"]) == (
        waiting.id,
        *OPERATOR,
    )
    assert endpoint.records() == []


def test_a_form_posted_base64_encoded_decides_too(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()

    page = endpoint.post(endpoint.link(waiting.id, "approve", waiting.expires), base64_body=True)

    assert page.status == 303, page.body
    approval = endpoint.store.get(waiting.id)
    assert approval is not None
    assert approval["status"] == "approved"
    assert json.loads(endpoint.flow.finished(waiting)["output"])["decision"] == "approve"


# --- GET confirms, never decides -------------------------------------------------------------


@pytest.mark.parametrize("opened", ["approve", "reject"])
def test_a_prefetched_link_shows_a_confirm_page_and_decides_nothing(
    endpoint: Endpoint, opened: Verdict
) -> None:
    waiting = endpoint.flow.open()

    page = endpoint.get(endpoint.link(waiting.id, opened, waiting.expires), caller=SCANNER)

    assert page.status == 200, page.body
    assert "<h1>Approve a change to DynamoDB table orders?</h1>" in page.body
    assert "<dd>account 123456789012, us-east-1, stack Autoremediate</dd>" in page.body
    assert '<tr class="changed"><td>read</td><td>5</td><td>10</td></tr>' in page.body
    assert "<li>table read capacity 5 -&gt; 10</li>" in page.body
    assert "(in 3 hours 59 minutes)" in page.body
    assert (page.headers["cache-control"], page.headers["x-frame-options"]) == (
        "no-store",
        "DENY",
    )
    forms = _forms(page)
    assert sorted(forms) == ["approve", "reject"]
    for verdict, form in forms.items():
        assert (form["method"], form["action"]) == ("post", "/")
        assert form["fields"] == endpoint.link(waiting.id, verdict, waiting.expires)
        assert form["autofocus"] is False  # nothing is the default, least of all approve
    endpoint.assert_undecided(waiting)
    assert endpoint.records() == []


def test_the_confirm_pages_button_decides(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    page = endpoint.get(endpoint.link(waiting.id, "reject", waiting.expires))

    answer = endpoint.post(_forms(page)["reject"]["fields"])

    assert answer.status == 303, answer.body
    approval = endpoint.store.get(waiting.id)
    assert approval is not None
    assert approval["status"] == "rejected"
    assert json.loads(endpoint.flow.finished(waiting)["output"])["decision"] == "reject"


def test_a_decided_approvals_links_show_the_decision_even_after_they_expire(
    endpoint: Endpoint,
) -> None:
    clock.use_simulated_time()
    waiting = endpoint.flow.open(deadline=timedelta(minutes=30))
    assert endpoint.post(endpoint.link(waiting.id, "approve", waiting.expires)).status == 303
    other = endpoint.link(waiting.id, "reject", waiting.expires)

    now = endpoint.get(other, caller=SCANNER)
    clock.advance(timedelta(days=1))
    later = endpoint.get(other)

    for page in (now, later):
        assert page.status == 200, page.body
        assert "Approved: the change is being applied." in page.body
        assert "Nothing was changed" not in page.body
        assert "<form" not in page.body
    assert endpoint.records() == []  # showing an outcome is no refused attempt


def test_a_tampered_link_to_a_decided_approval_is_still_refused(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    assert endpoint.post(endpoint.link(waiting.id, "approve", waiting.expires)).status == 303
    fields = endpoint.link(waiting.id, "approve", waiting.expires)
    fields["sig"] = _tampered(fields["sig"])

    page = endpoint.get(fields)

    endpoint.assert_refused(page, 403, "bad_signature", method="GET", fields=fields)


def test_pages_are_sent_with_strict_headers_and_the_favicon_costs_nothing(
    endpoint: Endpoint,
) -> None:
    waiting = endpoint.flow.open()
    page = endpoint.get(endpoint.link(waiting.id, "approve", waiting.expires))

    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in page.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["form-action"] == "'self'"
    assert policy["style-src"].startswith("'sha256-")
    assert "script-src" not in policy
    assert "<script" not in page.body
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.body
    assert '<link rel="icon" href="data:,">' in page.body

    icon = endpoint.call(_event("GET", path="/favicon.ico"))
    assert (icon.status, icon.body) == (204, "")
    assert endpoint.records() == []


# --- refused links: tampered, moved, expired, incomplete, unknown ---------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_tampered_signature_is_refused(endpoint: Endpoint, method: str) -> None:
    waiting = endpoint.flow.open()
    fields = endpoint.link(waiting.id, "approve", waiting.expires)
    fields["sig"] = _tampered(fields["sig"])

    page = endpoint.send(method, fields)

    endpoint.assert_refused(
        page,
        403,
        "bad_signature",
        method=method,
        fields=fields,
        message="the link's signature does not match",
    )
    endpoint.assert_undecided(waiting)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_reject_link_turned_into_approve_is_refused(endpoint: Endpoint, method: str) -> None:
    waiting = endpoint.flow.open()
    fields = {**endpoint.link(waiting.id, "reject", waiting.expires), "decision": "approve"}

    page = endpoint.send(method, fields)

    endpoint.assert_refused(page, 403, "bad_signature", method=method, fields=fields)
    endpoint.assert_undecided(waiting)


def test_a_link_moved_to_another_approval_is_refused(endpoint: Endpoint) -> None:
    first, second = endpoint.flow.open(), endpoint.flow.open()
    form = {**endpoint.link(first.id, "approve", first.expires), "id": second.id}

    page = endpoint.post(form)

    record = endpoint.assert_refused(page, 403, "bad_signature", method="POST", fields=form)
    assert record.approval is not None
    assert record.approval["id"] == second.id
    endpoint.assert_undecided(first, second)


def test_an_expired_link_is_refused(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    form = endpoint.link(waiting.id, "approve", int(time.time()) - 60)

    page = endpoint.post(form)

    endpoint.assert_refused(
        page, 410, "expired", method="POST", fields=form, message="the link has expired"
    )
    endpoint.assert_undecided(waiting)


def test_a_link_used_after_the_deadline_is_refused(endpoint: Endpoint) -> None:
    clock.use_simulated_time()
    waiting = endpoint.flow.open(deadline=timedelta(hours=1))
    form = endpoint.link(waiting.id, "approve", waiting.expires)
    clock.advance(timedelta(hours=1, seconds=1))

    page = endpoint.post(form)

    endpoint.assert_refused(
        page, 410, "expired", method="POST", fields=form, message="the link has expired"
    )
    endpoint.assert_undecided(waiting)


def test_a_link_outliving_its_approvals_deadline_is_refused_by_the_store(
    endpoint: Endpoint,
) -> None:
    # Given a link signed to expire a day after its approval's deadline
    clock.use_simulated_time()
    waiting = endpoint.flow.open(deadline=timedelta(hours=1))
    form = endpoint.link(waiting.id, "approve", waiting.expires + 86_400)
    # When it is posted after the deadline, the link itself still valid
    clock.advance(timedelta(hours=1, seconds=1))

    page = endpoint.post(form)

    # Then the store's decision window refuses it
    endpoint.assert_refused(
        page, 410, "expired", method="POST", fields=form, message="the decision window has closed"
    )
    endpoint.assert_undecided(waiting)


@pytest.mark.parametrize(
    "kept",
    [
        pytest.param((), id="empty body"),
        pytest.param(("id", "decision"), id="no expiry or signature"),
        pytest.param(("id", "decision", "expires"), id="no signature"),
        pytest.param(("decision", "expires", "sig"), id="no id"),
    ],
)
def test_an_incomplete_form_is_refused(endpoint: Endpoint, kept: tuple[str, ...]) -> None:
    waiting = endpoint.flow.open()
    full = endpoint.link(waiting.id, "approve", waiting.expires)
    form = {name: full[name] for name in kept}

    page = endpoint.call(_event("POST", form=form) if form else _event("POST"))

    missing = ", ".join(name for name in ("id", "decision", "expires", "sig") if name not in kept)
    endpoint.assert_refused(
        page, 400, "incomplete", method="POST", fields=form, message=f"the link lacks {missing}"
    )
    endpoint.assert_undecided(waiting)


def test_a_signed_link_to_an_unknown_approval_is_refused(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    unknown = uuid.uuid4().hex
    form = endpoint.link(unknown, "approve", waiting.expires)

    page = endpoint.post(form)

    endpoint.assert_refused(
        page, 404, "unknown", method="POST", fields=form, message="there is no such approval"
    )
    assert endpoint.store.get(unknown) is None
    endpoint.assert_undecided(waiting)


def test_a_non_numeric_expiry_is_refused(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    form = {**endpoint.link(waiting.id, "approve", waiting.expires), "expires": "tomorrow"}

    page = endpoint.post(form)

    endpoint.assert_refused(
        page,
        400,
        "incomplete",
        method="POST",
        fields=form,
        message="the link's expiry is not a number",
    )
    endpoint.assert_undecided(waiting)


def test_an_unknown_decision_is_refused_even_when_signed(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    form = {
        "id": waiting.id,
        "decision": "maybe",
        "expires": str(waiting.expires),
        "sig": endpoint.signer.signature(waiting.id, "maybe", waiting.expires),
    }

    page = endpoint.post(form)

    endpoint.assert_refused(
        page, 400, "bad_decision", method="POST", fields=form, message="unknown decision 'maybe'"
    )
    endpoint.assert_undecided(waiting)


# --- the flow could not take the decision ----------------------------------------------------


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_a_decision_the_ended_flow_cannot_take_is_refused(endpoint: Endpoint, code: str) -> None:
    waiting = endpoint.flow.open()
    endpoint.fail_send_task_success(code)
    form = endpoint.link(waiting.id, "approve", waiting.expires)

    page = endpoint.post(form)

    endpoint.assert_refused(
        page,
        410,
        "flow_ended",
        method="POST",
        fields=form,
        message="the approval flow has ended already",
    )
    assert len(endpoint.sent) == 1


def test_a_decision_the_ended_flow_cannot_take_leaves_no_decider(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    endpoint.fail_send_task_success("TaskTimedOut")

    page = endpoint.post(endpoint.link(waiting.id, "approve", waiting.expires))

    assert page.status == 410
    approval = endpoint.store.get(waiting.id)
    assert approval is not None
    assert approval["status"] != "approved"
    assert approval["source_ip"] is None


def test_a_decision_whose_sending_failed_can_be_sent_again(endpoint: Endpoint) -> None:
    waiting = endpoint.flow.open()
    form = endpoint.link(waiting.id, "approve", waiting.expires)
    endpoint.fail_send_task_success("AccessDeniedException")
    with pytest.raises(ClientError):
        endpoint.post(form)
    reset_clients()  # the next request: a client without the fault

    page = endpoint.post(form)

    assert page.status == 303, page.body
    assert json.loads(endpoint.flow.finished(waiting)["output"])["decision"] == "approve"


# --- LinkSigner ------------------------------------------------------------------------------

KEY = b"k" * 32
OTHER_KEY = b"K" + KEY[1:]
EXPIRES = 2_000_000_000


def test_a_signing_key_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        LinkSigner(KEY[:31])
    LinkSigner(KEY)  # 32 bytes is enough


def test_a_signature_depends_on_the_id_the_decision_the_expiry_and_the_key() -> None:
    signer = LinkSigner(KEY)
    signature = signer.signature("a1", "approve", EXPIRES)

    others = {
        signer.signature("a2", "approve", EXPIRES),
        signer.signature("a1", "reject", EXPIRES),
        signer.signature("a1", "approve", EXPIRES + 1),
        LinkSigner(OTHER_KEY).signature("a1", "approve", EXPIRES),
    }

    assert signer.signature("a1", "approve", EXPIRES) == signature
    assert signature not in others
    assert len(others) == 4
    # url-safe, unpadded base64 of an HMAC-SHA256
    assert len(signature) == 43
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert set(signature) <= set(alphabet)


def test_a_link_carries_what_check_accepts_until_it_expires() -> None:
    signer = LinkSigner(KEY)

    link = signer.link(BASE_URL + "/", "a1", "reject", EXPIRES)

    assert link.startswith(f"{BASE_URL}/?")
    fields = dict(parse_qsl(urlsplit(link).query))
    before = datetime.fromtimestamp(EXPIRES - 1, tz=UTC)
    assert signer.check(fields, before) == ("a1", "reject")
    with pytest.raises(LinkRefused) as expired:
        signer.check(fields, datetime.fromtimestamp(EXPIRES, tz=UTC))
    assert (expired.value.status, expired.value.reason) == (410, "expired")
    with pytest.raises(LinkRefused) as forged:
        LinkSigner(OTHER_KEY).check(fields, before)
    assert (forged.value.status, forged.value.reason) == (403, "bad_signature")


# --- in a real browser -----------------------------------------------------------------------
# Chromium from Debian's packages (`make setup` installs it), driven by Playwright; nothing is
# downloaded. The endpoint's handler answers through a local HTTP server, as the function URL
# would; set SCREENSHOTS_DIR to keep a screenshot of each page (`make screenshots`).

CHROMIUM = "/usr/bin/chromium"
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}


class _Bridge(BaseHTTPRequestHandler):
    """One HTTP request to the endpoint's handler, as a function-URL event."""

    endpoint: Endpoint
    paths: list[str]

    def do_GET(self) -> None:
        self._answer("GET", None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer("POST", dict(parse_qsl(self.rfile.read(length).decode())))

    def _answer(self, method: str, form: dict[str, str] | None) -> None:
        self.paths.append(self.path)
        url = f"{BASE_URL}{self.path}"
        event = function_url_event(
            method,
            url,
            form,
            source_ip=self.client_address[0],
            user_agent=self.headers["User-Agent"],
        )
        result = self.endpoint.handler(event, LambdaContext())
        body = str(result.get("body") or "").encode()
        self.send_response(int(result["statusCode"]))
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:  # no access log on stderr
        pass


@dataclass
class Browser:
    """A Chromium page at a viewport, against the endpoint served on 127.0.0.1."""

    page: Any
    url: str
    paths: list[str]
    errors: list[str]
    viewport: str

    def open(self, fields: dict[str, str]) -> Any:
        return self.page.goto(f"{self.url}/?{urlencode(fields)}")

    def fits(self) -> bool:
        """No horizontal scrolling."""
        width, inner = self.page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        return bool(width <= inner)

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("SCREENSHOTS_DIR")
        if folder:
            path = Path(folder) / f"approval-{name}-{self.viewport}.png"
            self.page.screenshot(path=str(path), full_page=True)


@pytest.fixture(params=sorted(VIEWPORTS))
def browser(endpoint: Endpoint, request: pytest.FixtureRequest) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    paths: list[str] = []
    bridge = type("Bridge", (_Bridge,), {"endpoint": endpoint, "paths": paths})
    server = ThreadingHTTPServer(("127.0.0.1", 0), bridge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    width, height = VIEWPORTS[request.param]
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = chromium.new_context(
                viewport={"width": width, "height": height},
                is_mobile=request.param == "phone",
                has_touch=request.param == "phone",
                device_scale_factor=2 if request.param == "phone" else 1,
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield Browser(
                page, f"http://127.0.0.1:{server.server_port}", paths, errors, request.param
            )
            chromium.close()
    finally:
        server.shutdown()
        server.server_close()


def _box(page: Any, selector: str) -> dict[str, float]:
    box: dict[str, float] = page.locator(selector).bounding_box()
    return box


def test_in_a_browser_the_page_fits_the_screen_and_its_buttons_are_big_and_distinct(
    endpoint: Endpoint, browser: Browser
) -> None:
    waiting = endpoint.flow.open()

    response = browser.open(endpoint.link(waiting.id, "approve", waiting.expires))

    assert response.status == 200
    assert browser.page.title() == "Approve a change to DynamoDB table orders?"
    assert browser.fits()
    approve, reject = _box(browser.page, "button.approve"), _box(browser.page, "button.reject")
    for box in (approve, reject):
        assert box["height"] >= 44  # a finger's target (Apple's and WCAG's 44 CSS px)
    assert reject["y"] - (approve["y"] + approve["height"]) >= 12  # apart, not stacked
    colours = browser.page.evaluate(
        "['approve', 'reject'].map(c => getComputedStyle(document.querySelector('button.' + c))"
        ".backgroundColor)"
    )
    assert colours[0] != colours[1]
    assert browser.page.evaluate("document.activeElement.tagName") == "BODY"  # no default
    assert browser.errors == []  # a style the CSP refused would be an error here
    assert browser.paths == [browser.paths[0]]  # the page only: no favicon request
    browser.screenshot("confirm")
    endpoint.assert_undecided(waiting)


def test_in_a_browser_approve_resumes_the_flow_and_reload_or_back_show_the_decision(
    endpoint: Endpoint, browser: Browser
) -> None:
    waiting = endpoint.flow.open()
    browser.open(endpoint.link(waiting.id, "approve", waiting.expires))

    with browser.page.expect_navigation():
        browser.page.click("button.approve")

    assert browser.page.title() == "Approved: DynamoDB table orders"
    assert "Approved: the change is being applied." in browser.page.content()
    assert browser.fits()
    browser.screenshot("approved")
    assert endpoint.flow.finished(waiting)["status"] == "SUCCEEDED"
    assert len(endpoint.sent) == 1
    browser.page.reload()
    assert browser.page.title() == "Approved: DynamoDB table orders"
    browser.page.go_back()
    assert "Approved: the change is being applied." in browser.page.content()
    assert "Nothing was changed" not in browser.page.content()
    assert len(endpoint.sent) == 1  # neither reload nor Back posted again
    assert browser.errors == []


@pytest.mark.parametrize("link", ["tampered", "expired"])
def test_in_a_browser_a_refused_link_says_why_and_what_to_do(
    endpoint: Endpoint, browser: Browser, link: str
) -> None:
    clock.use_simulated_time()
    waiting = endpoint.flow.open(deadline=timedelta(minutes=30))
    fields = endpoint.link(waiting.id, "approve", waiting.expires)
    if link == "tampered":
        fields["sig"] = _tampered(fields["sig"])
    else:
        clock.advance(timedelta(hours=1))

    response = browser.open(fields)

    assert response.status == (403 if link == "tampered" else 410)
    assert browser.page.title() == "This link cannot be used"
    text = browser.page.inner_text("main")
    assert "Nothing was changed." in text
    assert ("approval email" if link == "tampered" else "alarm asks again") in text
    assert browser.fits()
    # Chromium logs the document's own refusal status, and nothing else.
    assert browser.errors == [
        f"Failed to load resource: the server responded with a status of {response.status} "
        f"({'Forbidden' if link == 'tampered' else 'Gone'})"
    ]
    browser.screenshot(link)
    endpoint.assert_undecided(waiting)
