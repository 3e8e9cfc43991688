"""Lambda entry point for the expiry schedule: every run undoes the changes whose time ran out
(`core.expiry`: IP blocks past `block_for`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.core.expiry import expire_due
from remediators.core.guardrails import GuardrailState
from remediators.core.settings import Settings
from remediators.handlers.common import (
    count,
    idempotency,
    logger,
    metrics,
    persistence,
    recorder,
)

persistence_store = persistence()


@metrics.log_metrics
@logger.inject_lambda_context
@idempotent(config=idempotency, persistence_store=persistence_store)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Undo what is due; one record per policy whose changes were undone (or failed)."""
    settings = Settings.from_env()
    events = recorder(settings)
    guardrails = GuardrailState(settings.locks_table, events.audit)
    records = expire_due(events, guardrails, str(event["id"]))
    for record in records:
        count(record)
    return {"expired": [record.model_dump(mode="json") for record in records]}
