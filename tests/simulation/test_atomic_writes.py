"""moto evaluates a conditional write's condition and then writes, holding nothing between the
two; DynamoDB applies a conditional write atomically. Two conditional writes that both find
the item unlocked must not both take it: `atomic_dynamodb_writes` makes moto refuse the second,
as DynamoDB does."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.simulator.local_aws import atomic_dynamodb_writes


@pytest.fixture
def both_check_before_either_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write's condition, once evaluated, waits (up to 1 s) for the other's: without
    atomic writes both conditions are evaluated before either write, the interleaving that
    loses an update."""
    from moto.dynamodb import models

    barrier = threading.Barrier(2, timeout=1)
    make_parser = models.create_condition_expression_parser

    def parser(*args: Any, **kwargs: Any) -> Any:
        parsed = make_parser(*args, **kwargs)
        parse = parsed.parse

        def parse_then_wait() -> Any:
            op = parse()
            expr = op.expr

            def expr_then_wait(item: Any) -> Any:
                result = expr(item)
                # Broken: the other write is held back by the lock; go on alone.
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
                return result

            op.expr = expr_then_wait
            return op

        parsed.parse = parse_then_wait
        return parsed

    monkeypatch.setattr(models, "create_condition_expression_parser", parser)


def _take_the_lock_twice() -> list[str]:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="locks",
        KeySchema=[{"AttributeName": "lock_key", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "lock_key", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def take(owner: str) -> str:
        try:
            dynamodb.update_item(
                TableName="locks",
                Key={"lock_key": {"S": "dynamodb:table/orders"}},
                UpdateExpression="SET lock_owner = :me",
                ConditionExpression="attribute_not_exists(lock_owner)",
                ExpressionAttributeValues={":me": {"S": owner}},
            )
            return "taken"
        except ClientError as error:
            return error.response["Error"]["Code"]

    with ThreadPoolExecutor(2) as pool:
        return sorted(pool.map(take, ["first", "second"]))


@pytest.mark.usefixtures("aws", "both_check_before_either_writes")
def test_bare_moto_lets_two_conditional_writes_both_take_an_item() -> None:
    assert _take_the_lock_twice() == ["taken", "taken"]


@pytest.mark.usefixtures("aws", "both_check_before_either_writes")
def test_with_atomic_writes_the_second_conditional_write_is_refused() -> None:
    with atomic_dynamodb_writes():
        outcomes = _take_the_lock_twice()

    assert outcomes == ["ConditionalCheckFailedException", "taken"]


def _table(name: str, range_key: bool) -> None:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=schema,
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("atomic", [False, True], ids=["bare moto", "atomic writes"])
@pytest.mark.parametrize("range_key", [False, True], ids=["hash key", "hash and range key"])
def test_a_cancelled_transaction_leaves_every_item_as_it_was(atomic: bool, range_key: bool) -> None:
    """The snapshot of the items a transaction names restores what moto's whole-table copy
    restores: the updated item, the deleted one and the put one as before, the others kept."""
    dynamodb = boto3.client("dynamodb")
    _table("t", range_key)

    def key(name: str) -> dict[str, Any]:
        return {"pk": {"S": name}, **({"sk": {"S": "1"}} if range_key else {})}

    for name in ("updated", "deleted", "untouched"):
        dynamodb.put_item(TableName="t", Item={**key(name), "v": {"S": "before"}})
    before = sorted(dynamodb.scan(TableName="t")["Items"], key=str)
    context = atomic_dynamodb_writes() if atomic else contextlib.nullcontext()

    with context, pytest.raises(ClientError, match="TransactionCanceled"):
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": key("updated"),
                        "UpdateExpression": "SET v = :after",
                        "ExpressionAttributeValues": {":after": {"S": "after"}},
                    }
                },
                {"Delete": {"TableName": "t", "Key": key("deleted")}},
                {"Put": {"TableName": "t", "Item": {**key("new"), "v": {"S": "after"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "t",
                        "Key": key("untouched"),
                        "ConditionExpression": "v = :never",
                        "ExpressionAttributeValues": {":never": {"S": "never"}},
                    }
                },
            ]
        )

    assert sorted(dynamodb.scan(TableName="t")["Items"], key=str) == before
