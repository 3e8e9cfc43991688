"""The DynamoDB capacity-limits fidelity rule: bare moto provisions any capacity and reports
stale limits; the rule reports AWS's and refuses what passes them, as AWS does (a table and its
GSIs together within the per-table maximum, all tables within the account's)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.simulator import fidelity
from remediators.simulator.fidelity import dynamodb_capacity_limits
from remediators.simulator.fidelity.dynamodb_capacity_limits import Limits
from remediators.simulator.fidelity.dynamodb_table_updating import UPDATING_FOR

pytestmark = pytest.mark.usefixtures("aws")

_GUIDE = (
    "Refer to the Amazon DynamoDB Developer Guide for current limits and how to request higher "
    "limits."
)


def _bare(region: str = "us-east-1") -> boto3.Session:
    """A session as moto alone answers it."""
    return boto3.Session(region_name=region)


def _strict(region: str = "us-east-1") -> boto3.Session:
    """A session with the rules."""
    session = boto3.Session(region_name=region)
    fidelity.install(session)
    return session


def _throughput(read: int, write: int = 5) -> dict[str, int]:
    return {"ReadCapacityUnits": read, "WriteCapacityUnits": write}


def _create(session: boto3.Session, name: str, read: int, gsi_read: int | None = None) -> Any:
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
        "ProvisionedThroughput": _throughput(read),
    }
    if gsi_read is not None:
        request["AttributeDefinitions"].append({"AttributeName": "customer", "AttributeType": "S"})
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": "by-customer",
                "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": _throughput(gsi_read),
            }
        ]
    return session.client("dynamodb").create_table(**request)


def _raise_table(session: boto3.Session, name: str, read: int) -> Any:
    return session.client("dynamodb").update_table(
        TableName=name, ProvisionedThroughput=_throughput(read)
    )


def _raise_index(session: boto3.Session, name: str, read: int) -> Any:
    return session.client("dynamodb").update_table(
        TableName=name,
        GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "by-customer", "ProvisionedThroughput": _throughput(read)}}
        ],
    )


def _reads(name: str) -> tuple[int, ...]:
    """The table's and its GSIs' read capacity, as moto holds it."""
    table = _bare().client("dynamodb").describe_table(TableName=name)["Table"]
    indexes = table.get("GlobalSecondaryIndexes", [])
    return (
        table["ProvisionedThroughput"]["ReadCapacityUnits"],
        *(index["ProvisionedThroughput"]["ReadCapacityUnits"] for index in indexes),
    )


def _refused(call: Any, *args: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        call(*args)
    assert type(refused.value).__name__ == "LimitExceededException"  # botocore's modeled
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return dict(refused.value.response["Error"])


# --- what DescribeLimits says -----------------------------------------------------------------


def test_bare_moto_reports_limits_older_than_aws_defaults() -> None:
    limits = _bare().client("dynamodb").describe_limits()

    assert (limits["TableMaxReadCapacityUnits"], limits["AccountMaxReadCapacityUnits"]) == (
        10_000,
        20_000,
    )


def test_describe_limits_reports_aws_defaults_per_table_and_per_account() -> None:
    limits = _strict().client("dynamodb").describe_limits()

    assert {key: value for key, value in limits.items() if key != "ResponseMetadata"} == {
        "AccountMaxReadCapacityUnits": 80_000,
        "AccountMaxWriteCapacityUnits": 80_000,
        "TableMaxReadCapacityUnits": 40_000,
        "TableMaxWriteCapacityUnits": 40_000,
    }


# --- the per-table maximum: the table and its GSIs together -----------------------------------


def test_bare_moto_raises_a_table_and_its_gsi_past_the_per_table_maximum() -> None:
    _create(_bare(), "orders", read=30_000, gsi_read=9_000)

    _raise_table(_bare(), "orders", read=32_000)

    assert _reads("orders") == (32_000, 9_000)


def test_raising_a_table_whose_gsi_takes_it_past_the_maximum_is_refused_as_aws_does() -> None:
    # Given a table of 30,000 read units whose index has 9,000 (39,000 together)
    _create(_strict(), "orders", read=30_000, gsi_read=9_000)

    # When the table alone is raised to 32,000 (41,000 together, each within 40,000)
    error = _refused(_raise_table, _strict(), "orders", 32_000)

    # Then DynamoDB refuses it, and nothing changed
    assert error["Code"] == "LimitExceededException"
    assert error["Message"] == (
        "The requested ReadCapacityUnits, 41000, is above the per table maximum for the account "
        f"in us-east-1. Per table maximum: 40000. {_GUIDE}"
    )
    assert _reads("orders") == (30_000, 9_000)


def test_raising_the_gsi_counts_the_table_too() -> None:
    _create(_strict(), "orders", read=30_000, gsi_read=9_000)

    error = _refused(_raise_index, _strict(), "orders", 10_001)

    assert "ReadCapacityUnits, 40001, is above the per table maximum" in error["Message"]
    assert _reads("orders") == (30_000, 9_000)


def test_up_to_the_maximum_together_goes_through() -> None:
    _create(_strict(), "orders", read=30_000, gsi_read=9_000)

    _raise_table(_strict(), "orders", read=31_000)
    clock.advance(UPDATING_FOR)  # the update is done (UpdateTable is asynchronous)

    assert _reads("orders") == (31_000, 9_000)


def test_creating_a_table_whose_gsi_takes_it_past_the_maximum_is_refused() -> None:
    error = _refused(_create, _strict(), "orders", 30_000, 10_001)

    assert error["Message"].startswith("The requested ReadCapacityUnits, 40001, is above")
    assert _bare().client("dynamodb").list_tables()["TableNames"] == []
    _create(_strict(), "orders", read=30_000, gsi_read=10_000)  # 40,000: accepted


def test_the_limits_are_the_ones_describe_limits_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an account whose per-table maximum is 1,000 read units
    monkeypatch.setattr(dynamodb_capacity_limits, "LIMITS", Limits(table_read=1_000))
    _create(_strict(), "orders", read=600, gsi_read=400)

    # Then DescribeLimits says so, and the rule holds the table to it
    assert _strict().client("dynamodb").describe_limits()["TableMaxReadCapacityUnits"] == 1_000
    error = _refused(_raise_table, _strict(), "orders", 601)
    assert "Per table maximum: 1000." in error["Message"]


def test_a_table_above_a_lowered_maximum_may_still_come_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _create(_strict(), "orders", read=600, gsi_read=400)
    monkeypatch.setattr(dynamodb_capacity_limits, "LIMITS", Limits(table_read=500))

    _raise_table(_strict(), "orders", read=550)  # a decrease: 950 together, still above 500
    clock.advance(UPDATING_FOR)

    assert _reads("orders") == (550, 400)


def test_an_on_demand_table_has_no_capacity_to_check() -> None:
    _strict().client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    _strict().client("dynamodb").update_table(TableName="orders", TableClass="STANDARD")


# --- the account's maximum: all the region's tables and GSIs together -------------------------


def test_bare_moto_provisions_past_the_account_maximum() -> None:
    for name in ("orders", "payments", "invoices"):
        _create(_bare(), name, read=40_000)

    assert len(_bare().client("dynamodb").list_tables()["TableNames"]) == 3


def test_raising_a_table_past_what_the_account_has_left_is_refused() -> None:
    # Given two tables holding the account's 80,000 read units, and a third one
    _create(_strict(), "orders", read=39_000, gsi_read=1_000)
    _create(_strict(), "payments", read=39_000)
    _create(_strict(), "invoices", read=1_000)

    # When the third is raised by one unit
    error = _refused(_raise_table, _strict(), "invoices", 1_001)

    # Then it is refused as the account's limit, and its capacity is as it was
    assert error["Message"] == (
        "This request would have caused the ReadCapacityUnits limit to be exceeded for the "
        "account in us-east-1. Current ReadCapacityUnits reserved by the account: 80000. "
        f"Limit: 80000. Requested: 1001. {_GUIDE}"
    )
    assert _reads("invoices") == (1_000,)


def test_the_account_maximum_is_per_region() -> None:
    _create(_strict(), "orders", read=40_000)
    _create(_strict(), "payments", read=40_000)

    _create(_strict("eu-west-1"), "orders", read=40_000)  # another region's account quota

    assert _reads("orders") == (40_000,)
