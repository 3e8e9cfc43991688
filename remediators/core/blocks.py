"""The blocks ledger: when each address that `waf.block_ips` blocked is to be unblocked.

One DynamoDB item per (IP set, address): partition key `ip_set` (the set's resource key), sort
key `address` (a CIDR as written to the set), `expires_at` (epoch seconds) and `event_id` (what
asked for the block). The ledger is also the proof of ownership: a sweep removes from a set only
the addresses the ledger holds, so entries that other writers (people, other tools) put in the
same set are never touched. Items carry no DynamoDB TTL: an entry that vanished before its sweep
would leave its address blocked for good.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime

from botocore.exceptions import ClientError

from remediators.core.aws import client
from remediators.core.errors import ActionError

__all__ = ["BLOCKS_TABLE_ENV", "BlockLedger"]

# The environment variable naming the ledger's table (set by the stack on the function).
BLOCKS_TABLE_ENV = "BLOCKS_TABLE_NAME"


class BlockLedger:
    """Expiries of blocked addresses, per IP set, in a DynamoDB table."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @classmethod
    def from_env(cls) -> BlockLedger:
        """The ledger named by BLOCKS_TABLE_NAME; ActionError if the variable is not set."""
        table = os.environ.get(BLOCKS_TABLE_ENV, "").strip()
        if not table:
            raise ActionError(
                f"{BLOCKS_TABLE_ENV} is not set: blocked addresses need the blocks table to "
                "record when they expire (the stack sets it on the remediator function)"
            )
        return cls(table)

    def record(
        self, ip_set: str, addresses: Iterable[str], expires_at: datetime, event_id: str
    ) -> None:
        """Record that `addresses` of `ip_set` expire at `expires_at`. An address already in
        the ledger keeps the later of its expiry and this one (a re-block only extends)."""
        expires = str(_epoch(expires_at))
        for address in addresses:
            try:
                client("dynamodb").put_item(
                    TableName=self.table_name,
                    Item={
                        "ip_set": {"S": ip_set},
                        "address": {"S": address},
                        "expires_at": {"N": expires},
                        "event_id": {"S": event_id},
                    },
                    ConditionExpression="attribute_not_exists(address) OR #expires < :expires",
                    ExpressionAttributeNames={"#expires": "expires_at"},
                    ExpressionAttributeValues={":expires": {"N": expires}},
                )
            except ClientError as error:
                if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue  # recorded already, with a later expiry
                raise ActionError.from_client_error(
                    f"PutItem {self.table_name} ({address})", error
                ) from error

    def expiries(self, ip_set: str) -> dict[str, datetime]:
        """Every address the ledger holds for `ip_set`, with its expiry."""
        return {
            item["address"]["S"]: datetime.fromtimestamp(int(item["expires_at"]["N"]), UTC)
            for item in self._query(ip_set)
        }

    def expired(self, ip_set: str, now: datetime) -> list[str]:
        """The addresses of `ip_set` whose expiry is at or before `now`, sorted."""
        return sorted(item["address"]["S"] for item in self._query(ip_set, expired_by=_epoch(now)))

    def forget(
        self, ip_set: str, addresses: Iterable[str], *, expired_by: datetime | None = None
    ) -> None:
        """Delete the entries of `addresses`. With `expired_by`, only entries still expiring
        by then: an entry a re-block extended meanwhile is kept."""
        condition: dict[str, object] = {}
        if expired_by is not None:
            condition = {
                "ConditionExpression": "#expires <= :now",
                "ExpressionAttributeNames": {"#expires": "expires_at"},
                "ExpressionAttributeValues": {":now": {"N": str(_epoch(expired_by))}},
            }
        for address in addresses:
            try:
                client("dynamodb").delete_item(
                    TableName=self.table_name,
                    Key={"ip_set": {"S": ip_set}, "address": {"S": address}},
                    **condition,
                )
            except ClientError as error:
                if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue  # extended since it was read: it stays
                raise ActionError.from_client_error(
                    f"DeleteItem {self.table_name} ({address})", error
                ) from error

    def _query(self, ip_set: str, expired_by: int | None = None) -> list[dict[str, dict[str, str]]]:
        request: dict[str, object] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "#ip_set = :ip_set",
            "ExpressionAttributeNames": {"#ip_set": "ip_set"},
            "ExpressionAttributeValues": {":ip_set": {"S": ip_set}},
        }
        if expired_by is not None:
            request["FilterExpression"] = "#expires <= :now"
            request["ExpressionAttributeNames"] = {"#ip_set": "ip_set", "#expires": "expires_at"}
            request["ExpressionAttributeValues"] = {
                ":ip_set": {"S": ip_set},
                ":now": {"N": str(expired_by)},
            }
        items: list[dict[str, dict[str, str]]] = []
        try:
            for page in client("dynamodb").get_paginator("query").paginate(**request):
                items += page["Items"]
        except ClientError as error:
            raise ActionError.from_client_error(f"Query {self.table_name}", error) from error
        return items


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())
