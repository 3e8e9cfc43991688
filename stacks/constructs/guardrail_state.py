"""State the guardrails keep outside the audit trail: kill switch, per-resource guardrail state
(lock, cooldown, circuit breaker), idempotency keys."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from remediators.core.guardrails import ENABLED_VALUE, STATE_KEY, STATE_TTL_ATTRIBUTE
from stacks.constructs.tables import state_table

# Powertools idempotency's default attribute names.
IDEMPOTENCY_KEY, IDEMPOTENCY_TTL = "id", "expiration"


class GuardrailState(Construct):
    """The kill-switch parameter, the guardrail table and the idempotency table."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.kill_switch = ssm.StringParameter(
            self,
            "KillSwitch",
            parameter_name=f"/autoremediate/{Stack.of(self).stack_name}/actions",
            string_value=ENABLED_VALUE,
            description=f"'{ENABLED_VALUE}' lets autoremediate act; any other value (e.g. "
            "'disabled') stops every action, and events are recorded as skipped 'disabled'",
        )
        # One item per resource (remediators.core.guardrails), kept while it matters (its time
        # to live), nothing when the stack goes. "Locks": what it first held; renaming the
        # construct would replace the table and forget every cooldown.
        self.locks = state_table(
            self, "Locks", key=STATE_KEY, ttl=STATE_TTL_ATTRIBUTE, removal=RemovalPolicy.DESTROY
        )
        self.idempotency = state_table(
            self,
            "Idempotency",
            key=IDEMPOTENCY_KEY,
            ttl=IDEMPOTENCY_TTL,
            removal=RemovalPolicy.DESTROY,
        )

    def grant_to(self, grantee: iam.IGrantable) -> None:
        """Read the kill switch, keep the guardrail state, keep idempotency records."""
        self.grant_kill_switch_read(grantee)
        self.grant_locks(grantee)
        self.grant_idempotency(grantee)

    def grant_locks(self, grantee: iam.IGrantable) -> None:
        """Take and release locks, and with them keep the guardrail state: every read of it is
        a conditional UpdateItem's old item, every write an UpdateItem (alone, or as part of a
        TransactWriteItems with the audit record, which IAM checks as its parts)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"],
                resources=[self.locks.table_arn],
            )
        )

    def grant_idempotency(self, grantee: iam.IGrantable) -> None:
        """Keep idempotency records (Powertools idempotency on the event id)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ],
                resources=[self.idempotency.table_arn],
            )
        )

    def grant_kill_switch_read(self, grantee: iam.IGrantable) -> None:
        """Read the kill switch (a flow checks it before each change)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"], resources=[self.kill_switch.parameter_arn]
            )
        )
