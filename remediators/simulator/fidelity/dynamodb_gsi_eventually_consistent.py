"""A DynamoDB global secondary index is eventually consistent: a Query or Scan of it may not
show a write that just completed.

AWS: "All reads from GSIs and streams are eventually consistent." and "When issuing eventually
consistent reads to a DynamoDB table or an index, the responses may not reflect the results of
a recently completed write operation. If you repeat your read request after a short time, the
response should eventually return the more recent item."
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html
How short: "Write operations propagate to a GSI within 1 second" under normal conditions (AWS
Knowledge Center, https://repost.aws/knowledge-center/dynamodb-missing-table-items-gsi).

moto answers an index from the table itself, at once. The rule keeps each PutItem's and
UpdateItem's write out of the table's global secondary indexes for PROPAGATION of the
project's clock (TransactWriteItems' Puts and Updates alike): an item written within it is
left out of an index's answer if it is new, or answered as it was before the write if the index
held it then under the same index key (else left out). Deletes are not modelled (a deleted item
does not linger in the index). The item before the write is read through a session of the
rule's own.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any

from remediators.core import clock
from remediators.simulator.fidelity import Caller, Readers, api_params

__all__ = ["PROPAGATION", "RULE", "GsiEventuallyConsistent"]

PROPAGATION = timedelta(seconds=1)
_BEFORE = "fidelity_gsi_item_before"
_PRUNE_AT = 1_000


class GsiEventuallyConsistent:
    name = "dynamodb-global-secondary-indexes-are-eventually-consistent"
    doc = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html"
    on_by_default = True

    def register(self, events: Any, caller: Caller) -> None:
        index = _Index()
        for operation in ("PutItem", "UpdateItem", "TransactWriteItems"):
            events.register(f"before-call.dynamodb.{operation}", index.before_write)
            events.register(f"after-call.dynamodb.{operation}", index.after_write)
        for operation in ("Query", "Scan"):
            events.register(f"after-call.dynamodb.{operation}", index.after_read)


class _Index:
    """What the global secondary indexes of the tables show: the writes of the last
    PROPAGATION not yet."""

    def __init__(self) -> None:
        self._readers = Readers()
        self._schemas: dict[tuple[str, str], dict[str, Any]] = {}
        # (region, table, item key as JSON): when written, and the item before the write.
        self._recent: dict[tuple[str, str, str], tuple[datetime, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def before_write(self, context: dict[str, Any], **_: Any) -> None:
        request = api_params(context)
        region = str(context.get("client_region"))
        writes = [
            item[part]
            for item in request.get("TransactItems", [])
            for part in ("Put", "Update")
            if part in item
        ] or [request]
        context[_BEFORE] = [
            written for write in writes if (written := self._item_before(region, write))
        ]

    def _item_before(
        self, region: str, write: dict[str, Any]
    ) -> tuple[str, str, str, dict[str, Any] | None] | None:
        """(region, table, key, the item as it is before `write`), or None if the write is
        malformed (the write itself will say what is wrong)."""
        from botocore.exceptions import ClientError

        table = str(write.get("TableName"))
        try:
            keys = self._schema(region, table)["key"]
            key = write.get("Key") or {k: write["Item"][k] for k in keys}
            old = self._readers("dynamodb", region).get_item(
                TableName=table, Key=key, ConsistentRead=True
            )
        except (ClientError, KeyError):
            return None
        return region, table, _as_key(key), old.get("Item")

    def after_write(self, http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            return
        for region, table, key, before in context.get(_BEFORE, []):
            with self._lock:
                old = before
                previous = self._recent.get((region, table, key))
                # Within the window the index still shows what it showed before the first write.
                if previous is not None and clock.now() - previous[0] < PROPAGATION:
                    old = previous[1]
                self._recent[region, table, key] = (clock.now(), old)
                if len(self._recent) > _PRUNE_AT:  # what has propagated is the table's own
                    settled = clock.now() - PROPAGATION
                    self._recent = {k: v for k, v in self._recent.items() if v[0] > settled}

    def after_read(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        request = api_params(context)
        region, table = str(context.get("client_region")), str(request.get("TableName"))
        index = request.get("IndexName")
        if not index or "Items" not in parsed:
            return
        from botocore.exceptions import ClientError

        try:
            layout = self._schema(region, table)
        except ClientError:
            return
        if index not in layout["indexes"]:
            return  # a local secondary index: consistent reads are possible
        shown = []
        for item in parsed["Items"]:
            old = self._before(region, table, _as_key({k: item[k] for k in layout["key"]}))
            if old is _CURRENT:
                shown.append(item)
            elif old is not None and all(
                old.get(k) == item.get(k) for k in layout["indexes"][index]
            ):
                shown.append({name: old[name] for name in item if name in old})
        parsed["Items"] = shown
        parsed["Count"] = len(shown)

    def _before(self, region: str, table: str, key: str) -> Any:
        """The item as the index shows it: _CURRENT if its last write has propagated, else
        the item before that write (None: it was not there)."""
        with self._lock:
            written = self._recent.get((region, table, key))
        if written is None or clock.now() - written[0] >= PROPAGATION:
            return _CURRENT
        return written[1]

    def _schema(self, region: str, table: str) -> dict[str, Any]:
        """The table's key attributes, and each global secondary index's."""
        if (region, table) not in self._schemas:
            described = self._readers("dynamodb", region).describe_table(TableName=table)
            self._schemas[region, table] = {
                "key": [k["AttributeName"] for k in described["Table"]["KeySchema"]],
                "indexes": {
                    index["IndexName"]: [k["AttributeName"] for k in index["KeySchema"]]
                    for index in described["Table"].get("GlobalSecondaryIndexes", [])
                },
            }
        return self._schemas[region, table]


_CURRENT = object()


def _as_key(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


RULE = GsiEventuallyConsistent()
