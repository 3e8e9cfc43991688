"""The approval flow: a Standard state machine that waits for an operator's decision, the
endpoint behind the emailed links, the table of pending approvals and the link-signing key.

    RequestApproval (.waitForTaskToken, timeout from the request)
      -> Decision: approve -> ApplyApprovedChange        (fails -> ApplyFailed)
                   reject  -> RecordRejection
      timeout -> RecordTimeout
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import names
from stacks.constructs.remediator_function import RemediatorFunction, function_role
from stacks.constructs.state_machines import decision_task, lambda_task, standard_state_machine
from stacks.constructs.tables import state_table


class ApprovalFlow(Construct):
    """Everything a change that needs approval goes through."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        remediator: RemediatorFunction,
        environment: dict[str, str],
        audit_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        stack_name = Stack.of(self).stack_name
        self.state_machine_name = names.approval_state_machine_name(stack_name)
        self.state_machine_arn = (
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:"
            + self.state_machine_name
        )
        self.secret_name = names.approval_signing_secret_name(stack_name)
        # Secrets Manager appends six random characters to a secret's ARN.
        secret_arn = (
            f"arn:{Aws.PARTITION}:secretsmanager:{Aws.REGION}:{Aws.ACCOUNT_ID}:secret:"
            f"{self.secret_name}-??????"
        )
        # Who approved what is audit data: it outlives the stack.
        self.table = state_table(
            self, "Approvals", key="approval_id", ttl="expires_at", removal=RemovalPolicy.RETAIN
        )
        signing_key = secretsmanager.Secret(
            self,
            "SigningKey",
            secret_name=self.secret_name,
            description="autoremediate: HMAC key that signs approval links",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
        )
        Validations.of(signing_key).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-SMG4",
                reason="rotating the key would void every approval link in flight; replace "
                "it by hand (a new deployment of the secret) when it must change",
            )
        )
        # What a function that requests approvals needs to know (the approval and restore
        # flows' tasks).
        self.environment = {
            "APPROVALS_TABLE_NAME": self.table.table_name,
            "APPROVAL_SIGNING_SECRET": self.secret_name,
            # The email and the page name the stack: production and staging look different.
            "STACK_NAME": Aws.STACK_NAME,
        }

        endpoint_logs = logs.LogGroup(
            self, "EndpointLogs", retention=logs.RetentionDays.THREE_MONTHS
        )
        self.endpoint_role = endpoint_role = function_role(self, "EndpointRole", endpoint_logs)
        self.endpoint = remediator.sibling(
            "Endpoint",
            description="autoremediate: the approve/reject links of approval emails",
            handler=names.APPROVAL_ENDPOINT_HANDLER,
            role=endpoint_role,
            log_group=endpoint_logs,
            environment={**self.environment, "AUDIT_TABLE_NAME": audit_table.table_name},
            timeout_seconds=names.APPROVAL_ENDPOINT_TIMEOUT_SECONDS,
            reserved_concurrency=_endpoint_concurrency(self),
        )
        # Links must open from an email client: no IAM auth; every link is signed instead.
        self.url = self.endpoint.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)
        endpoint_role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
            )
        )
        endpoint_role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[audit_table.table_arn])
        )
        endpoint_role.add_to_policy(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[secret_arn])
        )
        self.accept_decisions_for(self.state_machine_arn)

        self.environment["APPROVAL_ENDPOINT_FUNCTION"] = self.endpoint.function_name
        self._secret_arn = secret_arn

        # The tasks apply changes: they run with the remediator's role and settings.
        self.tasks = remediator.sibling(
            "Tasks",
            description="autoremediate: tasks of the approval flow",
            handler=names.APPROVAL_TASKS_HANDLER,
            role=remediator.role,
            log_group=remediator.log_group,
            environment={
                **environment,
                **self.environment,
            },
        )
        self.grant_requesting(remediator.role)
        remediator.role.add_to_policy(
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self.state_machine_arn]
            )
        )
        self.state_machine = self._state_machine()

    def grant_requesting(self, role: iam.IRole) -> None:
        """What a request task needs: the approvals table (open, and close when nobody decided),
        the signing key, the endpoint's URL."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["dynamodb:PutItem", "dynamodb:UpdateItem"],
                resources=[self.table.table_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[self._secret_arn]
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["lambda:GetFunctionUrlConfig"], resources=[self.endpoint.function_arn]
            )
        )

    def accept_decisions_for(self, state_machine_arn: str) -> None:
        """Let the endpoint resume the executions of `state_machine_arn` that wait for it."""
        self.endpoint_role.add_to_policy(
            iam.PolicyStatement(actions=["states:SendTaskSuccess"], resources=[state_machine_arn])
        )

    def _state_machine(self) -> sfn.StateMachine:
        request = decision_task(
            self,
            "RequestApproval",
            self.tasks,
            {"task": "request", "request": sfn.JsonPath.entire_payload},
        )
        apply = self._task("ApplyApprovedChange", {"task": "apply"}, with_decision=True)
        reject = self._task(
            "RecordRejection", {"task": "conclude", "ending": "rejected"}, with_decision=True
        )
        expired = self._task("RecordTimeout", {"task": "conclude", "ending": "timeout"})
        request.add_catch(expired, errors=["States.Timeout"], result_path="$.timeout")
        apply.add_catch(
            sfn.Fail(self, "ApplyFailed", cause="the approved change failed; see the audit record"),
            result_path="$.error",
        )
        decision = (
            sfn.Choice(self, "Decision")
            .when(sfn.Condition.string_equals("$.decision.decision", "approve"), apply)
            .otherwise(reject)
        )
        return standard_state_machine(
            self, self.state_machine_name, request.next(decision), self.tasks
        )

    def _task(
        self, construct_id: str, fields: dict[str, str], *, with_decision: bool = False
    ) -> tasks.LambdaInvoke:
        payload = {**fields, "request": sfn.JsonPath.entire_payload}
        if with_decision:
            payload["decision"] = sfn.JsonPath.string_at("$.decision")
        return lambda_task(self, construct_id, self.tasks, payload)


def _endpoint_concurrency(scope: Construct) -> int | None:
    """The endpoint's reserved concurrency (names.APPROVAL_ENDPOINT_CONCURRENCY, or the context
    value; 0: none)."""
    value = scope.node.try_get_context(names.APPROVAL_ENDPOINT_CONCURRENCY_CONTEXT)
    reserved = names.APPROVAL_ENDPOINT_CONCURRENCY if value is None else int(value)
    return reserved or None
