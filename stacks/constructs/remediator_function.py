"""The remediator function: code asset, Powertools layer, log group, DLQ, least-privilege role;
and its siblings, the functions of the same code asset (one per event kind, the flows' tasks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from aws_cdk import Acknowledgment, Aws, Duration, Stage, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

import remediators
from remediators.core.policy import Policy, PolicyFile
from remediators.core.registry import Permission
from remediators.core.settings import POLICY_ASSET_NAME
from stacks import names

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64


class RemediatorFunction(Construct):
    """The Lambda function that runs actions for alarm events, and everything it needs to run."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        policy_file: PolicyFile,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(self, "DeadLetters")
        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.THREE_MONTHS)
        self.role = function_role(self, "Role", self.log_group)
        self.code = lambda_.Code.from_asset(str(self._stage_code(policy_file)))
        self.layer = self._build_powertools_layer()
        self.function = self.sibling(
            "Function",
            description="autoremediate: runs the remediation action for an alarm",
            handler=names.ALARM_HANDLER,
            role=self.role,
            log_group=self.log_group,
            environment=environment,
            dead_letter_queue=self.dead_letter_queue,
        )
        grant_actions(self.role, policy_file.policies)

    def sibling(
        self,
        construct_id: str,
        *,
        description: str,
        handler: str,
        role: iam.IRole,
        log_group: logs.ILogGroup,
        environment: dict[str, str],
        timeout_seconds: int = names.REMEDIATOR_TIMEOUT_SECONDS,
        dead_letter_queue: sqs.IQueue | None = None,
        reserved_concurrency: int | None = None,
    ) -> lambda_.Function:
        """A function of this code asset and layer (the remediator, or a flow's task)."""
        return lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=self.code,
            layers=[self.layer],
            role=role,
            timeout=Duration.seconds(timeout_seconds),
            memory_size=names.REMEDIATOR_MEMORY_MB,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            dead_letter_queue=dead_letter_queue,
            retry_attempts=names.FUNCTION_ASYNC_RETRIES if dead_letter_queue else None,
            reserved_concurrent_executions=reserved_concurrency,
            environment={
                "POWERTOOLS_SERVICE_NAME": names.POWERTOOLS_SERVICE,
                "POWERTOOLS_METRICS_NAMESPACE": names.METRICS_NAMESPACE,
                # No pydantic plugins: pydantic would otherwise scan every installed package's
                # entry points when it first builds a model, at each cold start
                # (https://docs.pydantic.dev/latest/concepts/plugins/, "Disabling plugins").
                "PYDANTIC_DISABLE_PLUGINS": "__all__",
                **environment,
            },
        )

    def handler_function(
        self,
        construct_id: str,
        *,
        description: str,
        handler: str,
        environment: dict[str, str],
    ) -> lambda_.Function:
        """An entry point of its own event kind (`handler`): this code asset, its own log
        group and role (which may write its logs, nothing else until granted), and the
        remediator's dead-letter queue, so that every failed event waits in one place."""
        log_group = logs.LogGroup(
            self, f"{construct_id}Logs", retention=logs.RetentionDays.THREE_MONTHS
        )
        return self.sibling(
            construct_id,
            description=description,
            handler=handler,
            role=function_role(self, f"{construct_id}Role", log_group),
            log_group=log_group,
            environment=environment,
            dead_letter_queue=self.dead_letter_queue,
        )

    def _build_powertools_layer(self) -> lambda_.ILayerVersion:
        parameter = names.POWERTOOLS_LAYER_PARAMETER.format(
            arch=ARCHITECTURE.name, runtime=RUNTIME.name
        )
        arn = ssm.StringParameter.value_for_string_parameter(self, parameter)
        return lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", arn)

    def _stage_code(self, policy_file: PolicyFile) -> Path:
        """Our packages and the validated policy file, nothing else (deps come from layers)."""
        stage = Stage.of(self)
        staging = Path(stage.outdir if stage else "cdk.out") / "staging" / self.node.addr
        if staging.exists():
            shutil.rmtree(staging)
        source = Path(remediators.__file__).parent
        target = staging / "remediators"
        target.mkdir(parents=True)
        shutil.copy2(source / "__init__.py", target / "__init__.py")
        for package in names.LAMBDA_PACKAGES:
            shutil.copytree(
                source / package,
                target / package,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        (staging / POLICY_ASSET_NAME).write_text(
            json.dumps(policy_file.model_dump(mode="json", exclude_none=True), indent=1)
        )
        return staging


def function_role(scope: Construct, construct_id: str, log_group: logs.ILogGroup) -> iam.Role:
    """A Lambda role that may write to `log_group` only (instead of
    AWSLambdaBasicExecutionRole: logs:* on every group)."""
    role = iam.Role(scope, construct_id, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn],
        )
    )
    return role


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    """An encrypted, TLS-only queue that keeps failed events long enough to replay them."""
    return sqs.Queue(
        scope,
        construct_id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(names.DEAD_LETTER_RETENTION_DAYS),
    )


def grant_actions(role: iam.Role, policies: list[Policy]) -> None:
    """Let `role` make what the policies' actions declare, on what the policies name."""
    permissions = action_permissions(policies)
    for statement in action_statements(permissions):
        role.add_to_policy(statement)
    acknowledge_wildcards(role, permissions)


def action_permissions(policies: list[Policy]) -> list[Permission]:
    """What each policy's action declares it needs, on the resources the policy names."""
    permissions: dict[Permission, None] = {}
    for policy in policies:
        for permission in policy.action_class.permissions(policy.target):
            permissions[permission] = None
    return list(permissions)


def action_statements(permissions: list[Permission]) -> list[iam.PolicyStatement]:
    """IAM statements for the permissions, one per set of actions and conditions."""
    merged: dict[tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]], set[str]] = {}
    for permission in permissions:
        key = (tuple(sorted(permission.actions)), tuple(sorted(permission.conditions)))
        merged.setdefault(key, set()).update(_arn(r) for r in permission.resources)
    statements = []
    for (actions, conditions), resources in sorted(merged.items()):
        condition_map: dict[str, dict[str, str]] = {}
        for operator, condition_key, value in conditions:
            condition_map.setdefault(operator, {})[condition_key] = value
        statements.append(
            iam.PolicyStatement(
                actions=list(actions),
                resources=sorted(resources),
                conditions=condition_map or None,
            )
        )
    return statements


def acknowledge_wildcards(role: iam.Role, permissions: list[Permission]) -> None:
    """Acknowledge cdk-nag IAM5 for each wildcard an action declares, with the action's reason."""
    acknowledgments = {}
    for permission in permissions:
        for resource in permission.resources:
            if "*" in resource and permission.why_wildcard:
                rendered = resource.format(
                    partition="<AWS::Partition>", region="<AWS::Region>", account="<AWS::AccountId>"
                )
                finding = f"AwsSolutions::AwsSolutions-IAM5[Resource::{rendered}]"
                acknowledgments[finding] = Acknowledgment(
                    id=finding, reason=f"{', '.join(permission.actions)}: {permission.why_wildcard}"
                )
    Validations.of(role).acknowledge(*acknowledgments.values())


def _arn(template: str) -> str:
    return template.format(partition=Aws.PARTITION, region=Aws.REGION, account=Aws.ACCOUNT_ID)
