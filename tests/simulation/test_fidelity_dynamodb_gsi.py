"""The GSI rule: bare moto shows a write in a global secondary index at once; with the rule
the index shows it only after the propagation delay (new items not yet, updated ones as they
were), while the table itself and local indexes stay consistent."""

from __future__ import annotations

import boto3
import pytest

from remediators.core import clock
from remediators.simulator import fidelity
from remediators.simulator.fidelity.dynamodb_gsi_eventually_consistent import PROPAGATION, RULE

pytestmark = pytest.mark.usefixtures("aws")


def _session(strict: bool) -> boto3.Session:
    session = boto3.Session(region_name="us-east-1")
    if strict:
        fidelity.install(session)
    return session


def _audit(session: boto3.Session) -> None:
    """A table keyed on `id`, with a GSI `by_target` (target, at), as the audit table."""
    session.client("dynamodb").create_table(
        TableName="audit",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("id", "target", "at")
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_target",
                "KeySchema": [
                    {"AttributeName": "target", "KeyType": "HASH"},
                    {"AttributeName": "at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def _record(session: boto3.Session, event: str, outcome: str = "applied") -> None:
    session.client("dynamodb").put_item(
        TableName="audit",
        Item={
            "id": {"S": event},
            "target": {"S": "dynamodb:table/orders"},
            "at": {"S": "2026-12-02T07:00:00Z"},
            "outcome": {"S": outcome},
        },
    )


def _by_target(session: boto3.Session) -> list[str]:
    answer = session.client("dynamodb").query(
        TableName="audit",
        IndexName="by_target",
        KeyConditionExpression="#t = :t",
        ExpressionAttributeNames={"#t": "target"},
        ExpressionAttributeValues={":t": {"S": "dynamodb:table/orders"}},
    )
    return [f"{item['id']['S']}:{item['outcome']['S']}" for item in answer["Items"]]


def test_bare_moto_shows_a_write_in_the_index_at_once() -> None:
    session = _session(strict=False)
    _audit(session)

    _record(session, "e1")

    assert _by_target(session) == ["e1:applied"]


def test_the_index_shows_a_new_item_only_after_the_propagation_delay() -> None:
    session = _session(strict=True)
    _audit(session)

    _record(session, "e1")
    during = _by_target(session)
    table = session.client("dynamodb").get_item(TableName="audit", Key={"id": {"S": "e1"}})
    clock.advance(PROPAGATION)

    assert during == []
    assert table["Item"]["outcome"]["S"] == "applied"  # the table itself is consistent
    assert _by_target(session) == ["e1:applied"]


def test_an_updated_item_is_shown_as_it_was_until_the_update_propagates() -> None:
    session = _session(strict=True)
    _audit(session)
    _record(session, "e1", outcome="pending")
    clock.advance(PROPAGATION)

    _record(session, "e1", outcome="applied")
    session.client("dynamodb").update_item(
        TableName="audit",
        Key={"id": {"S": "e1"}},
        UpdateExpression="SET verified = :v",
        ExpressionAttributeValues={":v": {"BOOL": True}},
    )

    assert _by_target(session) == ["e1:pending"]  # as before the first of the two writes
    clock.advance(PROPAGATION)
    assert _by_target(session) == ["e1:applied"]


def test_a_transaction_s_put_reaches_the_index_after_the_delay_too() -> None:
    session = _session(strict=True)
    _audit(session)
    item = {
        "id": {"S": "e1"},
        "target": {"S": "dynamodb:table/orders"},
        "at": {"S": "2026-12-02T07:00:00Z"},
        "outcome": {"S": "applied"},
    }

    session.client("dynamodb").transact_write_items(
        TransactItems=[{"Put": {"TableName": "audit", "Item": item}}]
    )
    during = _by_target(session)
    clock.advance(PROPAGATION)

    assert during == []
    assert _by_target(session) == ["e1:applied"]


def test_the_rule_is_on_by_default() -> None:
    assert RULE in fidelity.install(boto3.Session(region_name="us-east-1"))
