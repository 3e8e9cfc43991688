"""The autoremediate stack: composes the constructs from a validated policy file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from aws_cdk import Acknowledgment, CfnOutput, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from remediators.core.blocks import BLOCKS_TABLE_ENV
from remediators.core.policy import PolicyFile
from stacks import names
from stacks.constructs.approval_flow import ApprovalFlow
from stacks.constructs.audit_table import AuditTable
from stacks.constructs.expiry import Expiry
from stacks.constructs.flow_watch import FlowWatch
from stacks.constructs.guardrail_state import GuardrailState
from stacks.constructs.notifications import Notifications
from stacks.constructs.operations import Operations
from stacks.constructs.preset_alarms import PresetAlarms
from stacks.constructs.remediator_function import (
    RemediatorFunction,
    dead_letter_queue,
    grant_actions,
)
from stacks.constructs.restore_flow import RestoreFlow
from stacks.constructs.triggers import AlarmTriggers
from stacks.constructs.verification import Verification


class RemediationStack(Stack):
    """Alarm rules -> remediator function -> audit table and notification topics.

    One function per event kind, all of one code asset: the remediator (alarm events, and
    dead letters replayed), verification (its schedules), flow-ended (the flow-watch rule) and
    expiry (the sweep rule). Each has its own role with only what its kind needs: the
    verification may read alarms but change nothing; only the expiry function and the
    remediator may make changes; the flow-ended function may only read and write records.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        policy_file: PolicyFile,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        audit = AuditTable(self, "Audit")
        guardrails = GuardrailState(self, "Guardrails")
        notifications = Notifications(self, "Notifications", channels=policy_file.notifications)
        verification = Verification(self, "Verification")
        environment = {
            "AUDIT_TABLE_NAME": audit.table.table_name,
            "LOCKS_TABLE_NAME": guardrails.locks.table_name,
            "IDEMPOTENCY_TABLE_NAME": guardrails.idempotency.table_name,
            "KILL_SWITCH_PARAMETER": guardrails.kill_switch.parameter_name,
            "SCHEDULER_ROLE_ARN": verification.scheduler_role.role_arn,
            "NOTIFICATION_TOPICS": self.to_json_string(
                {name: topic.topic_arn for name, topic in notifications.topics.items()}
            ),
        }
        expiry: Expiry | None = None
        if any(policy.action_class.expires for policy in policy_file.policies):
            expiry = Expiry(self, "Expiry")
            environment[BLOCKS_TABLE_ENV] = expiry.blocks.table_name
        restore_policies = [p for p in policy_file.policies if p.action_class.flow == "restore"]
        # State machines by name, not by reference: their tasks refer to the remediator.
        if restore_policies:
            environment["FLOW_STATE_MACHINES"] = json.dumps(
                {
                    "restore": self._state_machine_arn(
                        names.flow_state_machine_name(self.stack_name, "restore")
                    )
                }
            )
        # The restore flow asks for approval twice.
        needs_approval = bool(restore_policies) or any(
            policy.needs_approval() for policy in policy_file.policies
        )
        if needs_approval:
            environment["APPROVAL_STATE_MACHINE_ARN"] = self._state_machine_arn(
                names.approval_state_machine_name(self.stack_name)
            )
        remediator = RemediatorFunction(
            self, "Remediator", policy_file=policy_file, environment=environment
        )
        # The other kinds' functions get the same settings (names, no grant), and no
        # reference to the verification function (its own would be a cycle).
        handler_environment = dict(environment)
        verifier = self._verifier(
            remediator,
            handler_environment,
            audit=audit,
            guardrails=guardrails,
            verification=verification,
        )
        # The remediator and the approval flow's tasks schedule verifications.
        environment["VERIFIER_FUNCTION_ARN"] = verifier.function_arn
        remediator.function.add_environment("VERIFIER_FUNCTION_ARN", verifier.function_arn)
        handlers = {"alarm": remediator.function, "verification": verifier}
        functions: list[lambda_.IFunction] = []
        approval: ApprovalFlow | None = None
        restore: RestoreFlow | None = None
        if needs_approval:
            approval = ApprovalFlow(
                self,
                "Approval",
                remediator=remediator,
                environment=environment,
                audit_table=audit.table,
            )
            functions += [approval.tasks, approval.endpoint]
        if approval is not None and restore_policies:
            restore = RestoreFlow(
                self,
                "Restore",
                policies=restore_policies,
                remediator=remediator,
                environment=handler_environment,
                approval=approval,
                audit=audit,
                guardrails=guardrails,
                notifications=notifications,
            )
            functions.append(restore.tasks)
        self._grant_remediator(remediator, audit, guardrails, verification)
        if expiry is not None:
            handlers["expiry"] = self._expiry_function(
                remediator,
                handler_environment,
                policy_file=policy_file,
                expiry=expiry,
                audit=audit,
                guardrails=guardrails,
            )
        if approval is not None:
            handlers["flow_ended"] = self._flow_ended_function(
                remediator, handler_environment, audit=audit, guardrails=guardrails
            )
        self._deny_changes_to_itself(
            remediator,
            [audit.table, guardrails.locks, guardrails.idempotency]
            + ([approval.table] if approval else [])
            + ([expiry.blocks] if expiry else []),
            [*functions, *handlers.values()],
        )
        for function in handlers.values():
            notifications.grant_publish(function)
        trigger_dead_letters = self._trigger_dead_letters()
        if expiry is not None:
            expiry.schedule(handlers["expiry"], trigger_dead_letters)
        if approval is not None:
            FlowWatch(
                self,
                "FlowWatch",
                state_machine_arns=[approval.state_machine_arn]
                + ([restore.state_machine_arn] if restore else []),
                function=handlers["flow_ended"],
                dead_letter_queue=trigger_dead_letters,
            )
        PresetAlarms(self, "PresetAlarms", policies=policy_file.policies)
        AlarmTriggers(
            self,
            "Triggers",
            selectors=[policy.alarm for policy in policy_file.policies],
            function=remediator.function,
            dead_letter_queue=trigger_dead_letters,
        )
        operators = policy_file.defaults.notify
        Operations(
            self,
            "Operations",
            function=remediator.function,
            other_functions={k: f for k, f in handlers.items() if k != "alarm"},
            dead_letter_queues=[remediator.dead_letter_queue, trigger_dead_letters],
            topics=[
                topic
                for name, topic in notifications.topics.items()
                if operators is None or name == operators
            ],
        )
        self._outputs(
            audit=audit,
            guardrails=guardrails,
            remediator=remediator,
            handlers=handlers,
            trigger_dead_letters=trigger_dead_letters,
            policy_file=policy_file,
        )
        self._flow_outputs(approval, restore)

    @staticmethod
    def _grant_remediator(
        remediator: RemediatorFunction,
        audit: AuditTable,
        guardrails: GuardrailState,
        verification: Verification,
    ) -> None:
        """The remediator's own state: the audit trail, the guardrails, its schedules."""
        audit.grant_record_and_query(remediator.function)
        guardrails.grant_to(remediator.function)
        verification.grant_scheduling(remediator.function)

    @staticmethod
    def _verifier(
        remediator: RemediatorFunction,
        environment: dict[str, str],
        *,
        audit: AuditTable,
        guardrails: GuardrailState,
        verification: Verification,
    ) -> lambda_.Function:
        """The verification schedules' function: it reads alarms and marks the action's
        record; it changes no resource."""
        function = remediator.handler_function(
            "Verifier",
            description="autoremediate: is an action's alarm still in ALARM at its deadline?",
            handler=names.VERIFICATION_HANDLER,
            environment=environment,
        )
        verification.grant_verifying(function)
        audit.grant_read(function, update=True)
        guardrails.grant_idempotency(function)
        return function

    @staticmethod
    def _expiry_function(
        remediator: RemediatorFunction,
        environment: dict[str, str],
        *,
        policy_file: PolicyFile,
        expiry: Expiry,
        audit: AuditTable,
        guardrails: GuardrailState,
    ) -> lambda_.Function:
        """The sweep's function: it may undo what the expiring policies' actions do, under
        the resource's lock, and record it; the remediator records what it blocks."""
        function = remediator.handler_function(
            "Expiry",
            description="autoremediate: undo changes whose time ran out",
            handler=names.EXPIRY_HANDLER,
            environment=environment,
        )
        grant_actions(
            cast(iam.Role, function.role),
            [policy for policy in policy_file.policies if policy.action_class.expires],
        )
        audit.grant_record(function)
        guardrails.grant_locks(function)
        guardrails.grant_idempotency(function)
        expiry.grant_ledger(remediator.function)
        return function

    @staticmethod
    def _flow_ended_function(
        remediator: RemediatorFunction,
        environment: dict[str, str],
        *,
        audit: AuditTable,
        guardrails: GuardrailState,
    ) -> lambda_.Function:
        """The flow-watch rule's function: it reads and writes audit records, nothing else."""
        function = remediator.handler_function(
            "FlowEnded",
            description="autoremediate: record flows that ended without recording",
            handler=names.FLOW_ENDED_HANDLER,
            environment=environment,
        )
        audit.grant_read(function)
        audit.grant_record(function)
        guardrails.grant_idempotency(function)
        return function

    def _trigger_dead_letters(self) -> sqs.Queue:
        """The dead-letter queue of every rule's target (events EventBridge could not deliver)."""
        queue = dead_letter_queue(self, "TriggerDeadLetters")
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-SQS3",
                reason="this queue is the dead-letter queue of the EventBridge rule targets "
                "(cdk-nag only recognizes queues used in a redrive policy)",
            )
        )
        return queue

    def _outputs(
        self,
        *,
        audit: AuditTable,
        guardrails: GuardrailState,
        remediator: RemediatorFunction,
        handlers: dict[str, lambda_.Function],
        trigger_dead_letters: sqs.IQueue,
        policy_file: PolicyFile,
    ) -> None:
        """What the operator commands (`remediate history`, `revert`, `dead-letters`) look up."""
        CfnOutput(self, "AuditTableName", value=audit.table.table_name)
        CfnOutput(self, "RemediatorFunctionName", value=remediator.function.function_name)
        # Where `remediate dead-letters --replay` sends each event, by its kind.
        CfnOutput(
            self,
            "HandlerFunctions",
            value=self.to_json_string(
                {kind: function.function_name for kind, function in handlers.items()}
            ),
        )
        CfnOutput(self, "KillSwitchParameter", value=guardrails.kill_switch.parameter_name)
        CfnOutput(
            self,
            "DeadLetterQueues",
            value=self.to_json_string(
                {
                    "function": remediator.dead_letter_queue.queue_url,
                    "rule": trigger_dead_letters.queue_url,
                }
            ),
        )
        CfnOutput(self, "PolicyNames", value=json.dumps([p.name for p in policy_file.policies]))

    def _state_machine_arn(self, name: str) -> str:
        return f"arn:{self.partition}:states:{self.region}:{self.account}:stateMachine:{name}"

    def _deny_changes_to_itself(
        self,
        remediator: RemediatorFunction,
        tables: Sequence[dynamodb.ITable],
        functions: Sequence[lambda_.IFunction],
    ) -> None:
        """A policy that takes its target from the alarm may change any table or function of
        the account: never the stack's own."""
        remediator.role.add_to_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["dynamodb:UpdateTable", "dynamodb:DeleteTable"],
                resources=[table.table_arn for table in tables],
            )
        )
        # A separate policy: the function's ARN in its own role's default policy is a cycle.
        iam.Policy(
            self,
            "RemediatorSelfProtection",
            roles=[remediator.role],
            statements=[
                iam.PolicyStatement(
                    effect=iam.Effect.DENY,
                    actions=[
                        "lambda:UpdateFunctionConfiguration",
                        "lambda:PutFunctionConcurrency",
                        "lambda:DeleteFunctionConcurrency",
                    ],
                    resources=[function.function_arn for function in functions],
                )
            ],
        )

    def _flow_outputs(self, approval: ApprovalFlow | None, restore: RestoreFlow | None) -> None:
        """What the operator commands (`remediate approvals`, `remediate restore`) look up."""
        if approval is not None:
            CfnOutput(self, "ApprovalsTableName", value=approval.table.table_name)
            CfnOutput(self, "ApprovalStateMachineArn", value=approval.state_machine_arn)
            CfnOutput(self, "ApprovalEndpointFunction", value=approval.endpoint.function_name)
        if restore is not None:
            CfnOutput(self, "RestoreStateMachineArn", value=restore.state_machine_arn)
