"""DynamoDB's UpdateTable is asynchronous: the table (and each index it changes) is UPDATING
for a while, still reports its old throughput, and refuses another UpdateTable meanwhile.

AWS: "UpdateTable is an asynchronous operation; while it's executing, the table status changes
from ACTIVE to UPDATING. While it's UPDATING, you can't issue another UpdateTable request."
ResourceInUseException: "You tried to update a resource that was already being updated."
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTable.html
The message, as DynamoDB writes it: "Attempt to change a resource which is still in use: Table
is being updated: NAME". botocore does not retry ResourceInUseException (it is in none of its
retry lists), so the caller sees it.

moto applies an UpdateTable at once and the table stays ACTIVE. AWS gives no figure for how
long an update takes; the rule keeps the table UPDATING for UPDATING_FOR of the project's
clock (simulated time in the simulator: a poll's sleep moves it on).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from remediators.core import clock
from remediators.simulator.fidelity import (
    Caller,
    InProgress,
    Readers,
    Refusal,
    api_params,
    error_response,
)

__all__ = ["RULE", "UPDATING_FOR", "DynamoDBTableUpdating"]

UPDATING_FOR = timedelta(seconds=20)
_OLD = "fidelity_dynamodb_old_throughput"


@dataclass
class _Update:
    """A table being updated: until when, and the throughput it still reports."""

    until: datetime
    table: dict[str, Any]
    indexes: dict[str, dict[str, Any]]


class DynamoDBTableUpdating:
    name = "dynamodb-update-table-is-asynchronous"
    doc = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTable.html"

    def register(self, events: Any, caller: Caller) -> None:
        updating = InProgress()  # by (region, table): per installed session
        readers = Readers()

        def before_update(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
            key = _key(context)
            if updating.get(key) is not None:
                refusal = Refusal(
                    "ResourceInUseException",
                    f"Attempt to change a resource which is still in use: Table is being "
                    f"updated: {key[1]}",
                )
                return error_response(refusal, str(params.get("url", "")))
            context[_OLD] = _throughput_of(_describe(key, readers))
            return None

        def after_update(http_response: Any, parsed: dict[str, Any], context: dict[str, Any],
                         **_: Any) -> None:  # fmt: skip
            old = context.get(_OLD)
            if http_response.status_code >= 300 or old is None:
                return
            request = api_params(context)
            changed = {
                update["Update"]["IndexName"]
                for update in request.get("GlobalSecondaryIndexUpdates", [])
                if "Update" in update
            }
            table, indexes = old
            update = _Update(
                clock.now() + UPDATING_FOR,
                table,
                {name: value for name, value in indexes.items() if name in changed},
            )
            updating.start(_key(context), update)
            _show(parsed.get("TableDescription", {}), update)

        def after_describe(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            update = updating.get(_key(context))
            if update is not None and "Table" in parsed:
                _show(parsed["Table"], update)

        events.register("before-call.dynamodb.UpdateTable", before_update)
        events.register("after-call.dynamodb.UpdateTable", after_update)
        events.register("after-call.dynamodb.DescribeTable", after_describe)


def _key(context: dict[str, Any]) -> tuple[str, str]:
    name = str(api_params(context).get("TableName", ""))
    return str(context.get("client_region")), name.rsplit(":table/", 1)[-1]


def _describe(key: tuple[str, str], readers: Readers) -> dict[str, Any]:
    """The table as it is before the update (an unknown table: UpdateTable will say so)."""
    from botocore.exceptions import ClientError

    region, name = key
    try:
        table = readers("dynamodb", region).describe_table(TableName=name)
    except ClientError:
        return {}
    return dict(table["Table"])


def _throughput_of(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    indexes = {
        index["IndexName"]: copy.deepcopy(index.get("ProvisionedThroughput", {}))
        for index in table.get("GlobalSecondaryIndexes", [])
    }
    return copy.deepcopy(table.get("ProvisionedThroughput", {})), indexes


def _show(table: dict[str, Any], update: _Update) -> None:
    """What DescribeTable answers during the update: UPDATING, the throughput before it."""
    table["TableStatus"] = "UPDATING"
    if update.table:
        table["ProvisionedThroughput"] = {**table.get("ProvisionedThroughput", {}), **update.table}
    for index in table.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in update.indexes:
            index["IndexStatus"] = "UPDATING"
            index["ProvisionedThroughput"] = {
                **index.get("ProvisionedThroughput", {}),
                **update.indexes[index["IndexName"]],
            }


RULE = DynamoDBTableUpdating()
