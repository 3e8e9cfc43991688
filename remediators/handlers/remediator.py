"""Lambda entry point for CloudWatch alarm state changes routed by EventBridge."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

import remediators.actions  # noqa: F401  (registers the actions the policy file names)
from remediators.core.audit import AuditStore
from remediators.core.events import AlarmEvent
from remediators.core.notify import Notifier
from remediators.core.policy import load_policy_file
from remediators.core.remediate import Remediator
from remediators.core.settings import Settings

logger = Logger()
metrics = Metrics()


@cache
def _remediator(settings: Settings) -> Remediator:
    """Built once per execution environment (per settings), on first use."""
    return Remediator(
        policies=load_policy_file(settings.policy_path),
        audit=AuditStore(settings.audit_table),
        notifier=Notifier(settings.notification_topics),
    )


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Parse the EventBridge event, remediate, return the audit record."""
    remediator = _remediator(Settings.from_env())
    try:
        alarm_event = AlarmEvent.model_validate(event)
    except ValidationError as error:
        record = remediator.record_invalid(event, _summary(error))
    else:
        try:
            record = remediator.handle(alarm_event)
        except Exception:  # recorded as failed by core; Lambda retries, then dead-letters
            metrics.add_metric(name="Outcome_failed", unit=MetricUnit.Count, value=1)
            raise
    logger.info("remediation finished", extra=record.model_dump(mode="json", exclude_none=True))
    metrics.add_metric(name=f"Outcome_{record.outcome.value}", unit=MetricUnit.Count, value=1)
    return record.model_dump(mode="json")


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in error.errors()
    )
