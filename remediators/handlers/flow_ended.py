"""Lambda entry point for the flows' executions that ended without success (FAILED,
TIMED_OUT, ABORTED), routed by the flow-watch rule (`core.flows.flow_ended`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.core.flows import flow_ended
from remediators.core.settings import Settings
from remediators.handlers.common import count, idempotency, logger, metrics, persistence, recorder

persistence_store = persistence()


@metrics.log_metrics
@logger.inject_lambda_context
@idempotent(config=idempotency, persistence_store=persistence_store)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Record how the execution ended: its event `failed` and escalated if it was still
    `pending`, else the status change itself (`flow_recorded`)."""
    record = flow_ended(recorder(Settings.from_env()), event)
    count(record)
    return record.model_dump(mode="json")
