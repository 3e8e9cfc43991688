"""Names and fixed settings of the deployed resources, in one place."""

from __future__ import annotations

STACK_NAME = "Autoremediate"
# The remediator's code asset: these packages of `remediators/`, plus the validated policy.
LAMBDA_PACKAGES = ("core", "actions", "handlers", "flows")
# One entry point per event kind (remediators/handlers/), each its own function and role.
ALARM_HANDLER = "remediators.handlers.alarm.lambda_handler"
VERIFICATION_HANDLER = "remediators.handlers.verification.lambda_handler"
FLOW_ENDED_HANDLER = "remediators.handlers.flow_ended.lambda_handler"
EXPIRY_HANDLER = "remediators.handlers.expiry.lambda_handler"
APPROVAL_TASKS_HANDLER = "remediators.flows.approval.lambda_handler"
APPROVAL_ENDPOINT_HANDLER = "remediators.handlers.approval_endpoint.lambda_handler"
APPROVAL_ENDPOINT_TIMEOUT_SECONDS = 10
# The public approval endpoint's reserved concurrency: a flood of requests to its URL can take
# no more of the account's concurrency than this. Lambda keeps at least 100 of the account's
# unreserved, so an account whose quota is below 100 + this cannot reserve it: deploy there
# with `-c approvalEndpointConcurrency=0` (no reservation).
# https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html
APPROVAL_ENDPOINT_CONCURRENCY = 5
APPROVAL_ENDPOINT_CONCURRENCY_CONTEXT = "approvalEndpointConcurrency"
RESTORE_TASKS_HANDLER = "remediators.flows.restore.lambda_handler"


def approval_state_machine_name(stack_name: str) -> str:
    """Named, so that the remediator can start it without a reference (which is a cycle)."""
    return f"autoremediate-{stack_name}-approval"


def flow_state_machine_name(stack_name: str, flow: str) -> str:
    """The state machine of an action's flow (`Action.flow`, e.g. restore), named for the same
    reason as the approval flow's."""
    return f"autoremediate-{stack_name}-{flow}"


def approval_signing_secret_name(stack_name: str) -> str:
    """Named, so that grants need no reference to the secret."""
    return f"autoremediate/{stack_name}/approval-signing-key"


POWERTOOLS_SERVICE = "autoremediate"
METRICS_NAMESPACE = "Autoremediate"
# Public Powertools layer, resolved at deploy time: {arch} x86_64|arm64, {runtime} python3.x.
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/{arch}/{runtime}/latest"
REMEDIATOR_TIMEOUT_SECONDS = 120
REMEDIATOR_MEMORY_MB = 256
# EventBridge -> Lambda and Lambda async retries before an event goes to a dead-letter queue.
RULE_TARGET_RETRIES = 4
FUNCTION_ASYNC_RETRIES = 2
DEAD_LETTER_RETENTION_DAYS = 14
