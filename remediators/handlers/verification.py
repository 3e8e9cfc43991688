"""Lambda entry point for verification requests: an action's one-time schedule, due at the
policy's `verify_within`, asks whether its alarm left ALARM (`core.verify`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.core.settings import Settings
from remediators.core.verify import VerifyRequest, verify
from remediators.handlers.common import idempotency, logger, metrics, persistence, recorder

persistence_store = persistence()


@metrics.log_metrics
@logger.inject_lambda_context
@idempotent(config=idempotency, persistence_store=persistence_store)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Verify one applied action; `verified` is None when there is nothing to verify. A
    malformed request fails (Lambda retries it, then dead-letters it)."""
    record = verify(recorder(Settings.from_env()), VerifyRequest.model_validate(event))
    if record is None:
        return {"verified": None}
    metrics.add_metric(
        name="Verified" if record.verified else "Unresolved", unit=MetricUnit.Count, value=1
    )
    return {"event_id": record.event_id, "verified": record.verified}
