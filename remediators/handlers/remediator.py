"""Lambda entry point for CloudWatch alarm state changes routed by EventBridge."""

from __future__ import annotations

import os
from functools import cache
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)
from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

import remediators.actions  # noqa: F401  (registers the actions the policy file names)
from remediators.core.audit import AuditRecord
from remediators.core.aws import client
from remediators.core.events import AlarmEvent
from remediators.core.remediate import FLOW_ENDED_DETAIL_TYPE, Remediator
from remediators.core.settings import Settings
from remediators.core.verify import VerifyRequest

logger = Logger()
metrics = Metrics()


def _mark_duplicate(response: Any, record: DataRecord) -> Any:
    """A repeated delivery of a handled event gets the first result, marked as a duplicate."""
    logger.info(
        "duplicate delivery: returning the recorded result", extra={"key": record.idempotency_key}
    )
    metrics.add_metric(name="DuplicateDeliveries", unit=MetricUnit.Count, value=1)
    return {**response, "duplicate": True} if isinstance(response, dict) else response


# EventBridge and Lambda deliver at least once: the same event id acts once. Keys outlive
# every retry (EventBridge retries for 2 h, Lambda's async queue keeps events up to 6 h).
idempotency = IdempotencyConfig(
    event_key_jmespath="id",
    expires_after_seconds=24 * 3600,
    response_hook=cast(IdempotentHookFunction, _mark_duplicate),  # Protocol vs. a function
)
# One DynamoDB client for idempotency and the actions (created at init, as boto3's would be).
persistence = DynamoDBPersistenceLayer(
    table_name=os.environ["IDEMPOTENCY_TABLE_NAME"], boto3_client=client("dynamodb")
)


@cache
def _remediator(settings: Settings, function_arn: str) -> Remediator:
    """Built once per execution environment (per settings), on first use."""
    return Remediator.from_settings(settings, function_arn)


@metrics.log_metrics
@logger.inject_lambda_context
@idempotent(config=idempotency, persistence_store=persistence)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Parse the EventBridge event (or a verification request), remediate, return the record."""
    remediator = _remediator(Settings.from_env(), context.invoked_function_arn)
    if event.get("kind") == "verify":
        return _verify(remediator, event)
    if event.get("detail-type") == FLOW_ENDED_DETAIL_TYPE:  # a flow that could not record
        record = remediator.flow_ended(event)
        _count(record)
        return record.model_dump(mode="json")
    if event.get("detail-type") == "Scheduled Event":  # the expiry schedule
        records = remediator.expire_due(str(event["id"]))
        for record in records:
            _count(record)
        return {"expired": [record.model_dump(mode="json") for record in records]}
    try:
        alarm_event = AlarmEvent.model_validate(event)
    except ValidationError as error:
        record = remediator.record_invalid(event, _summary(error))
    else:
        try:
            record = remediator.handle(alarm_event)
        except Exception:  # recorded as failed by core; Lambda retries, then dead-letters
            metrics.add_metric(name="Failed", unit=MetricUnit.Count, value=1)
            raise
    _count(record)
    logger.info("remediation finished", extra=record.model_dump(mode="json", exclude_none=True))
    return record.model_dump(mode="json")


def _verify(remediator: Remediator, event: dict[str, Any]) -> dict[str, Any]:
    record = remediator.verify(VerifyRequest.model_validate(event))
    if record is None:
        return {"verified": None}
    metrics.add_metric(
        name="Verified" if record.verified else "Unresolved", unit=MetricUnit.Count, value=1
    )
    return {"event_id": record.event_id, "verified": record.verified}


def _count(record: AuditRecord) -> None:
    metrics.add_metric(name=record.outcome.value.capitalize(), unit=MetricUnit.Count, value=1)
    if record.reason:
        metrics.add_metric(name=f"Reason_{record.reason}", unit=MetricUnit.Count, value=1)
    if record.escalated:
        metrics.add_metric(name="Escalations", unit=MetricUnit.Count, value=1)
    if record.reason == "recovered" and record.recovery_seconds is not None:
        metrics.add_metric(
            name="TimeToRecovery", unit=MetricUnit.Seconds, value=record.recovery_seconds
        )


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'event'}: {e['msg']}" for e in error.errors()
    )
