"""DynamoDB keeps provisioned capacity within the limits DescribeLimits reports: a table plus
all its global secondary indexes within TableMax{Read,Write}CapacityUnits, and all of a
region's provisioned tables and indexes together within AccountMax{Read,Write}CapacityUnits.

AWS, DescribeLimits: TableMaxReadCapacityUnits is "The maximum read capacity units that your
account allows you to provision for a new table that you are creating in this Region,
including the read capacity units provisioned for its global secondary indexes (GSIs)";
AccountMaxReadCapacityUnits "The maximum total read capacity units that your account allows
you to provision across all of your tables in this Region" (the same for writes); the account's
use is the sum over ListTables of each table's and each of its GSIs' provisioned capacity.
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DescribeLimits.html
The defaults: 40,000 read and 40,000 write capacity units per table, 80,000 of each per account
and Region, both adjustable ("Quotas in Amazon DynamoDB",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html; the AWS
CLI's describe-limits example shows the same four figures).

The pages disagree on when the per-table maximum applies. DescribeLimits says "The per-table
quotas apply only when you are creating a new table" (for existing tables only the account
quota). The quotas page once said the table-level quotas "apply to the sum of a table's
throughput together with the throughput of all of its global secondary indexes", and now says
the quota is the most "that can be provisioned for any table or any of its GSIs". What AWS does:
UpdateTable above the maximum is refused, and Application Auto Scaling's documented health
notice says of that refusal "This limit restricts the provisioned write capacity of the table
and all of its associated global secondary indexes"
(https://docs.aws.amazon.com/autoscaling/application/userguide/monitoring-personal-health-dashboard.html).
The rule models that sum, for CreateTable and UpdateTable; if AWS checks each table and index
alone, the rule is stricter than AWS, never more lenient.

The refusals are LimitExceededException (400). botocore's standard retry mode counts that code
as a throttle and retries it; a rule's answer (before-call) is given once, not per attempt, so
the simulator shows the refusal, not the retries. The texts are not
documented; they are as observed (AWS's health notice quotes the first, and a public catalogue
of probed DynamoDB errors lists both): "The requested ReadCapacityUnits, N, is above the per
table maximum for the account in REGION. Per table maximum: 40000. Refer to the Amazon DynamoDB
Developer Guide for current limits and how to request higher limits." and "This request would
have caused the ReadCapacityUnits limit to be exceeded for the account in REGION. Current
ReadCapacityUnits reserved by the account: N. Limit: 80000. Requested: M. Refer to ..." (its
tail, and which figure N is when GSIs count, are the rule's own guess: N is the table's and its
indexes' total as the request would leave them). A request that lowers the total is never
refused.

moto 5.2.5 checks no limit, and its DescribeLimits answers fixed figures from before the
current defaults (20,000 per account, 10,000 per table: botocore's 2016 example). The rule
answers DescribeLimits with LIMITS (AWS's defaults; a test may lower them) and refuses by the
same figures. It reads the tables through a session of its own, so its reads are no calls of
the caller's (as dynamodb_table_updating does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from remediators.simulator.fidelity import Caller, Readers, Refusal, api_params, error_response

__all__ = ["LIMITS", "RULE", "DynamoDBCapacityLimits", "Limits"]

_DIMENSIONS = {"read": "ReadCapacityUnits", "write": "WriteCapacityUnits"}
_GUIDE = (
    "Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher "
    "limits."
)


@dataclass(frozen=True)
class Limits:
    """What DescribeLimits reports: per dimension, per table (with its GSIs) and per account."""

    table_read: int = 40_000
    table_write: int = 40_000
    account_read: int = 80_000
    account_write: int = 80_000

    def table(self, dimension: str) -> int:
        return self.table_read if dimension == "read" else self.table_write

    def account(self, dimension: str) -> int:
        return self.account_read if dimension == "read" else self.account_write


# AWS's defaults; monkeypatch this module's LIMITS for an account with other quotas.
LIMITS = Limits()


class DynamoDBCapacityLimits:
    name = "dynamodb-provisioned-capacity-within-describe-limits"
    doc = "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DescribeLimits.html"

    def register(self, events: Any, caller: Caller) -> None:
        readers = Readers()

        def describe_limits(parsed: dict[str, Any], **_: Any) -> None:
            if "AccountMaxReadCapacityUnits" in parsed:
                parsed.update(_reported(LIMITS))

        def create_table(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
            request = api_params(context)
            if request.get("BillingMode") == "PAY_PER_REQUEST":
                return None
            indexes = request.get("GlobalSecondaryIndexes", [])
            wanted = _total(
                request.get("ProvisionedThroughput", {}),
                [index.get("ProvisionedThroughput", {}) for index in indexes],
            )
            region = str(context.get("client_region"))
            refusal = _refusal(region, wanted, {"read": 0, "write": 0}, readers, "")
            return error_response(refusal, str(params.get("url", ""))) if refusal else None

        def update_table(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
            request = api_params(context)
            region = str(context.get("client_region"))
            name = str(request.get("TableName", "")).rsplit(":table/", 1)[-1]
            table = _describe(readers("dynamodb", region), name)
            if not table or _billing(request.get("BillingMode"), table) == "PAY_PER_REQUEST":
                return None  # unknown (UpdateTable will say so) or on-demand: no capacity
            now = _capacity(table)
            wanted = _after(table, request)
            refusal = _refusal(region, wanted, now, readers, name)
            return error_response(refusal, str(params.get("url", ""))) if refusal else None

        events.register("after-call.dynamodb.DescribeLimits", describe_limits)
        events.register("before-call.dynamodb.CreateTable", create_table)
        events.register("before-call.dynamodb.UpdateTable", update_table)


def _reported(limits: Limits) -> dict[str, int]:
    return {
        "AccountMaxReadCapacityUnits": limits.account_read,
        "AccountMaxWriteCapacityUnits": limits.account_write,
        "TableMaxReadCapacityUnits": limits.table_read,
        "TableMaxWriteCapacityUnits": limits.table_write,
    }


def _refusal(
    region: str,
    wanted: dict[str, int],
    now: dict[str, int],
    readers: Readers,
    table: str,
) -> Refusal | None:
    """AWS's refusal of a table (and its GSIs) going from `now` to `wanted` capacity, if any:
    the per-table maximum first, then the account's (all provisioned tables but this one, plus
    `wanted`). `table`: the table being updated ("" for a new one)."""
    for dimension, field in _DIMENSIONS.items():
        if wanted[dimension] <= now[dimension]:
            continue  # never refuses a decrease, nor what does not change
        maximum = LIMITS.table(dimension)
        if wanted[dimension] > maximum:
            return Refusal(
                "LimitExceededException",
                f"The requested {field}, {wanted[dimension]}, is above the per table maximum "
                f"for the account in {region}. Per table maximum: {maximum}. {_GUIDE}",
            )
    reserved = _account_total(readers("dynamodb", region), except_table=table)
    for dimension, field in _DIMENSIONS.items():
        if wanted[dimension] <= now[dimension]:
            continue
        limit = LIMITS.account(dimension)
        if reserved[dimension] + wanted[dimension] > limit:
            return Refusal(
                "LimitExceededException",
                f"This request would have caused the {field} limit to be exceeded for the "
                f"account in {region}. Current {field} reserved by the account: "
                f"{reserved[dimension] + now[dimension]}. Limit: {limit}. Requested: "
                f"{wanted[dimension]}. {_GUIDE}",
            )
    return None


def _billing(requested: Any, table: dict[str, Any]) -> str:
    """The table's billing mode once the update is done."""
    if requested:
        return str(requested)
    return str(table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"))


def _after(table: dict[str, Any], request: dict[str, Any]) -> dict[str, int]:
    """The table's and its GSIs' total capacity per dimension once `request` is applied."""
    base = request.get("ProvisionedThroughput") or table.get("ProvisionedThroughput", {})
    indexes = {
        index["IndexName"]: index.get("ProvisionedThroughput", {})
        for index in table.get("GlobalSecondaryIndexes", [])
    }
    for update in request.get("GlobalSecondaryIndexUpdates", []):
        if "Update" in update:
            change = update["Update"]
            indexes[change["IndexName"]] = change.get("ProvisionedThroughput", {})
        elif "Create" in update:
            create = update["Create"]
            indexes[create["IndexName"]] = create.get("ProvisionedThroughput", {})
        elif "Delete" in update:
            indexes.pop(update["Delete"]["IndexName"], None)
    return _total(base, list(indexes.values()))


def _capacity(table: dict[str, Any]) -> dict[str, int]:
    """The total capacity per dimension of a table (a description) and its GSIs."""
    if table.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST":
        return {"read": 0, "write": 0}
    indexes = table.get("GlobalSecondaryIndexes", [])
    return _total(
        table.get("ProvisionedThroughput", {}),
        [index.get("ProvisionedThroughput", {}) for index in indexes],
    )


def _total(table: dict[str, Any], indexes: list[dict[str, Any]]) -> dict[str, int]:
    return {
        dimension: sum(int(throughput.get(field, 0)) for throughput in [table, *indexes])
        for dimension, field in _DIMENSIONS.items()
    }


def _account_total(reader: Any, except_table: str) -> dict[str, int]:
    """The provisioned capacity of every table of the region and its GSIs, per dimension (as
    DescribeLimits' page computes it), leaving out `except_table`."""
    total = {"read": 0, "write": 0}
    for page in reader.get_paginator("list_tables").paginate():
        for name in page["TableNames"]:
            if name == except_table:
                continue
            capacity = _capacity(_describe(reader, name))
            total = {dimension: total[dimension] + capacity[dimension] for dimension in total}
    return total


def _describe(reader: Any, name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        return dict(reader.describe_table(TableName=name)["Table"])
    except ClientError:
        return {}


RULE = DynamoDBCapacityLimits()
