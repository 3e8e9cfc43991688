"""Shared guardrails with state outside the audit trail: the kill switch and resource locks.

Duplicate deliveries are stopped before these, by Powertools idempotency in the handler;
cooldown and the circuit breaker read the audit trail (see `Remediator`); hard caps are part
of each action's plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.aws import client

__all__ = ["ENABLED_VALUE", "LOCK_TTL_ATTRIBUTE", "KillSwitch", "ResourceLocks"]

logger = logging.getLogger(__name__)

# The kill-switch parameter holds this value while actions are allowed; anything else stops them.
ENABLED_VALUE = "enabled"
LOCK_TTL_ATTRIBUTE = "expires_at"


class KillSwitch:
    """One SSM parameter that turns every automatic action off."""

    def __init__(self, parameter: str) -> None:
        self.parameter = parameter

    def enabled(self) -> bool:
        """Whether actions may run: read every time, so that flipping it takes effect at once.

        A missing parameter counts as off: when in doubt, do not act. Any other error is
        raised, so the event fails and is retried instead of being skipped.
        """
        try:
            value = client("ssm").get_parameter(Name=self.parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return False
            raise  # throttled or denied: fail the event so that it is retried, not dropped
        return str(value).strip().lower() == ENABLED_VALUE


class ResourceLocks:
    """Per-resource locks: a conditional write with an expiry, so a crashed holder frees it."""

    def __init__(self, table_name: str, ttl: timedelta = timedelta(minutes=5)) -> None:
        self.table_name = table_name
        self.ttl = ttl

    @contextmanager
    def hold(self, resource_key: str, owner: str) -> Iterator[bool]:
        """Yield True while holding the lock on `resource_key`, False if another owner has it."""
        now = clock.now()
        try:
            client("dynamodb").put_item(
                TableName=self.table_name,
                Item={
                    "lock_key": {"S": resource_key},
                    "owner": {"S": owner},
                    LOCK_TTL_ATTRIBUTE: {"N": str(int((now + self.ttl).timestamp()))},
                },
                ConditionExpression="attribute_not_exists(lock_key) OR #expires < :now",
                ExpressionAttributeNames={"#expires": LOCK_TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            yield False
            return
        try:
            yield True
        finally:
            try:
                client("dynamodb").delete_item(
                    TableName=self.table_name,
                    Key={"lock_key": {"S": resource_key}},
                    ConditionExpression="#owner = :owner",
                    ExpressionAttributeNames={"#owner": "owner"},
                    ExpressionAttributeValues={":owner": {"S": owner}},
                )
            except ClientError as error:
                # Expired and taken over: not ours to delete. Anything else: the expiry frees
                # it; failing here would fail (and retry) an event that may have acted.
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    logger.warning("could not release the lock on %s: %s", resource_key, error)
