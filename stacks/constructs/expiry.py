"""Changes that lapse: the blocks ledger (when each blocked address is to be unblocked) and the
schedule that undoes what is due (`waf.block_ips` blocks past `block_for`)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks import names
from stacks.constructs.tables import state_table

# How often lapsed changes are undone: a block lasts at most this much past its time.
SWEEP_EVERY = Duration.minutes(5)


class Expiry(Construct):
    """The blocks ledger table; `schedule` adds the sweep once the function exists."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        # No TTL, and kept: losing an entry would leave its address blocked for good.
        self.blocks = state_table(
            self, "Blocks", key="ip_set", sort_key="address", removal=RemovalPolicy.RETAIN
        )

    def grant_ledger(self, grantee: iam.IGrantable) -> None:
        """Record, read and remove the ledger's entries (the action blocks and sweeps; its
        revert removes)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:Query", "dynamodb:DeleteItem"],
                resources=[self.blocks.table_arn],
            )
        )

    def schedule(self, function: lambda_.IFunction, dead_letter_queue: sqs.IQueue) -> None:
        """Invoke `function` with a Scheduled Event every SWEEP_EVERY; let it use the ledger."""
        self.grant_ledger(function)
        events.Rule(
            self,
            "Sweep",
            description="autoremediate: undo changes whose time ran out (expired IP blocks)",
            schedule=events.Schedule.rate(SWEEP_EVERY),
        ).add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=dead_letter_queue,
                retry_attempts=names.RULE_TARGET_RETRIES,
                max_event_age=SWEEP_EVERY,
            )
        )
