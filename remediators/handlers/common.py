"""What the entry points share: idempotency on the event's id, and metrics of outcomes."""

from __future__ import annotations

import os
from functools import cache
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
)
from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from pydantic import ValidationError

from remediators.core.audit import AuditRecord, AuditStore
from remediators.core.aws import client
from remediators.core.notify import Notifier
from remediators.core.outcomes import Recorder
from remediators.core.policy import load_shipped_policy_file
from remediators.core.settings import Settings

__all__ = ["count", "idempotency", "logger", "metrics", "persistence", "recorder", "summary"]

logger = Logger()
metrics = Metrics()


def _mark_duplicate(response: Any, record: DataRecord) -> Any:
    """A repeated delivery of a handled event gets the first result, marked as a duplicate."""
    logger.info(
        "duplicate delivery: returning the recorded result", extra={"key": record.idempotency_key}
    )
    metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
    return {**response, "duplicate": True} if isinstance(response, dict) else response


# EventBridge, EventBridge Scheduler and Lambda deliver at least once: the same event id acts
# once. Keys outlive every retry (EventBridge retries for 2 h, Lambda's async queue keeps
# events up to 6 h).
idempotency = IdempotencyConfig(
    event_key_jmespath="id",
    expires_after_seconds=24 * 3600,
    response_hook=cast(IdempotentHookFunction, _mark_duplicate),  # Protocol vs. a function
)


def persistence() -> DynamoDBPersistenceLayer:
    """The idempotency table, with the one DynamoDB client the actions use too (created at
    init, as boto3's would be)."""
    return DynamoDBPersistenceLayer(
        table_name=os.environ["IDEMPOTENCY_TABLE_NAME"], boto3_client=client("dynamodb")
    )


@cache
def recorder(settings: Settings) -> Recorder:
    """How the entry points without an alarm pipeline record and notify (built once per
    execution environment, on first use)."""
    return Recorder(
        load_shipped_policy_file(settings.policy_path),
        AuditStore(settings.audit_table),
        Notifier(settings.notification_topics),
    )


def count(record: AuditRecord) -> None:
    """Metrics of how an event ended: outcome, reason, escalation, time to recovery."""
    metrics.add_metric(name=record.outcome.value.capitalize(), unit=MetricUnit.Count, value=1)
    if record.reason:
        metrics.add_metric(name=f"Reason_{record.reason}", unit=MetricUnit.Count, value=1)
    if record.escalated:
        metrics.add_metric(name="Escalations", unit=MetricUnit.Count, value=1)
    if record.reason == "recovered" and record.recovery_seconds is not None:
        metrics.add_metric(
            name="TimeToRecovery", unit=MetricUnit.Seconds, value=record.recovery_seconds
        )


def summary(error: ValidationError) -> str:
    """A validation error in one line: each field and what is wrong with it."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in error.errors()
    )
