"""Tasks of the approval state machine, one Lambda function; the task is in the payload.

- `request` (a `.waitForTaskToken` task): store the pending approval with its task token and
  email the signed approve and reject links. The execution then waits for the endpoint's
  SendTaskSuccess, or times out.
- `apply`: the operator approved: apply the approved plan through the guardrails, record.
- `conclude`: rejected or timed out: nothing applied; record who or what decided, escalate.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.core.approval import (
    ApprovalRequest,
    ApprovalStore,
    Decision,
    LinkSigner,
    signing_key,
)
from remediators.core.approval_words import Where
from remediators.core.approved_changes import apply_approved, conclude
from remediators.core.aws import client
from remediators.core.notify import Notifier, render_approval_request
from remediators.core.policy import Policies
from remediators.core.remediate import Remediator
from remediators.core.settings import Settings

logger = Logger()
metrics = Metrics()


@cache
def _remediator(settings: Settings) -> Remediator:
    # Verification schedules of approved changes invoke the verification function.
    return Remediator.from_settings(settings, os.environ["VERIFIER_FUNCTION_ARN"])


@cache
def _endpoint_url(function_name: str) -> str:
    return str(client("lambda").get_function_url_config(FunctionName=function_name)["FunctionUrl"])


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one task of the approval flow."""
    settings = Settings.from_env()
    request = ApprovalRequest.model_validate(event["request"])
    task = event["task"]
    logger.append_keys(approval_id=request.approval_id, event_id=request.event_id, task=task)
    if task == "request":
        return send_approval_request(
            settings, request, event["token"], event["execution"], _remediator(settings).policies
        )
    if task == "apply":
        record = apply_approved(
            _remediator(settings), request, Decision.model_validate(event["decision"])
        )
    elif task == "conclude":
        ending = event["ending"]
        decision = Decision.model_validate(event["decision"]) if ending == "rejected" else None
        if ending == "timeout":
            approval_store(settings).close(request.approval_id, "expired")
        record = conclude(_remediator(settings).recorder, request, ending, decision)
    else:
        raise ValueError(f"unknown approval task {task!r}")
    metrics.add_metric(
        name=f"Approval_{record.reason or record.outcome.value}", unit=MetricUnit.Count, value=1
    )
    logger.info("approval flow recorded", extra=record.model_dump(mode="json", exclude_none=True))
    return record.model_dump(mode="json")


def send_approval_request(
    settings: Settings,
    request: ApprovalRequest,
    token: str,
    execution: str,
    policies: Policies,
) -> dict[str, Any]:
    """Store the pending approval with its task token and email the signed links to the
    policy's channel (the request task of the approval and restore flows)."""
    approval_store(settings).open(request, token, execution)
    if settings.approval_signing_secret is None or settings.approval_endpoint_function is None:
        raise RuntimeError("the approval flow's signing secret or endpoint is not configured")
    signer = LinkSigner(signing_key(settings.approval_signing_secret))
    base_url = _endpoint_url(settings.approval_endpoint_function)
    expires = int(request.deadline.timestamp())
    where = Where.of(execution, settings.stack_name)
    subject, body = render_approval_request(
        request,
        where,
        signer.link(base_url, request.approval_id, "approve", expires),
        signer.link(base_url, request.approval_id, "reject", expires),
    )
    policy = policies.policy_named(request.policy)
    channel = policies.channel(policy) if policy else None
    message_id = Notifier(settings.notification_topics).send(channel, subject, body)
    metrics.add_metric(name="ApprovalRequested", unit=MetricUnit.Count, value=1)
    return {"approval_id": request.approval_id, "message_id": message_id}


def approval_store(settings: Settings) -> ApprovalStore:
    if settings.approvals_table is None:
        raise RuntimeError("the approval flow's table is not configured")
    return ApprovalStore(settings.approvals_table)
