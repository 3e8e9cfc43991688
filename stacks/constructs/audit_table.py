"""The audit table: one record per event, PITR on, records expire by TTL."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from remediators.core.audit import BY_ALARM_INDEX, BY_TARGET_INDEX, TTL_ATTRIBUTE
from stacks.constructs.tables import state_table


class AuditTable(Construct):
    """DynamoDB table keyed by event id, with an index by target and time."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        # The audit trail outlives the stack.
        self.table = state_table(
            self, "Table", key="event_id", ttl=TTL_ATTRIBUTE, removal=RemovalPolicy.RETAIN
        )
        for index, key in ((BY_TARGET_INDEX, "target"), (BY_ALARM_INDEX, "alarm")):
            self.table.add_global_secondary_index(
                index_name=index,
                partition_key=dynamodb.Attribute(name=key, type=dynamodb.AttributeType.STRING),
                sort_key=dynamodb.Attribute(name="recorded_at", type=dynamodb.AttributeType.STRING),
            )

    def grant_record(self, grantee: iam.IGrantable) -> None:
        """Write records only (a flow records its outcome; it never reads the trail)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[self.table.table_arn])
        )

    def grant_read(self, grantee: iam.IGrantable, *, update: bool = False) -> None:
        """Read records by event id (and `update` them: verification marks its record)."""
        actions = ["dynamodb:GetItem"] + (["dynamodb:UpdateItem"] if update else [])
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.table.table_arn])
        )

    def grant_record_and_query(self, grantee: iam.IGrantable) -> None:
        """Write, read and update records (recovery), and query the two indexes."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:Query"],
                resources=[
                    f"{self.table.table_arn}/index/{index}"
                    for index in (BY_TARGET_INDEX, BY_ALARM_INDEX)
                ],
            )
        )
