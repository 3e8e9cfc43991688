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
