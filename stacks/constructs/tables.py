"""How every table of the stack is made: on demand, PITR on, AWS-managed encryption."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct


def state_table(
    scope: Construct,
    construct_id: str,
    *,
    key: str,
    removal: RemovalPolicy,
    sort_key: str | None = None,
    ttl: str | None = None,
) -> dynamodb.Table:
    """A table keyed on string `key` (and `sort_key`), expiring items by `ttl` if given."""

    def attribute(name: str) -> dynamodb.Attribute:
        return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)

    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=attribute(key),
        sort_key=attribute(sort_key) if sort_key else None,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        time_to_live_attribute=ttl,
        removal_policy=removal,
    )
