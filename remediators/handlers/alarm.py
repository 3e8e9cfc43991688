"""Lambda entry point for CloudWatch alarm state changes routed by the alarm rules (and for
dead letters replayed to it)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import idempotent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.core.events import AlarmEvent
from remediators.core.remediate import Remediator
from remediators.core.settings import Settings
from remediators.handlers.common import count, idempotency, logger, metrics, persistence, summary

persistence_store = persistence()


@cache
def _remediator(settings: Settings) -> Remediator:
    """Built once per execution environment (per settings), on first use."""
    return Remediator.from_settings(settings, os.environ["VERIFIER_FUNCTION_ARN"])


@metrics.log_metrics
@logger.inject_lambda_context
@idempotent(config=idempotency, persistence_store=persistence_store)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Parse the EventBridge alarm event, remediate, return the audit record. An event that
    is not a well-formed alarm state change is recorded `invalid`; nothing acts."""
    remediator = _remediator(Settings.from_env())
    try:
        alarm_event = AlarmEvent.model_validate(event)
    except ValidationError as error:
        record = remediator.recorder.invalid(event, summary(error))
    else:
        try:
            record = remediator.handle(alarm_event)
        except Exception:  # recorded as failed by core; Lambda retries, then dead-letters
            metrics.add_metric(name="Failed", unit=MetricUnit.Count, value=1)
            raise
    count(record)
    logger.info("remediation finished", extra=record.model_dump(mode="json", exclude_none=True))
    return record.model_dump(mode="json")
