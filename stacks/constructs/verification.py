"""What the verification of actions needs: a role EventBridge Scheduler assumes to invoke the
verification function at the deadline, the remediator's right to create those one-time
schedules, and the verification function's right to read the policies' alarms."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from remediators.core.verify import SCHEDULE_GROUP, SCHEDULE_PREFIX


class Verification(Construct):
    """The scheduler role and the grants around it."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
            description="autoremediate: lets EventBridge Scheduler invoke the verifier",
        )

    def grant_scheduling(self, function: lambda_.Function) -> None:
        """`function` (the remediator) may create the one-time schedules, with the scheduler
        role."""
        schedules = (
            f"arn:{Aws.PARTITION}:scheduler:{Aws.REGION}:{Aws.ACCOUNT_ID}:schedule/"
            f"{SCHEDULE_GROUP}/{SCHEDULE_PREFIX}*"
        )
        role = function.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["scheduler:CreateSchedule"], resources=[schedules])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.scheduler_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            )
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:scheduler:"
                f"<AWS::Region>:<AWS::AccountId>:schedule/{SCHEDULE_GROUP}/{SCHEDULE_PREFIX}*]",
                reason="scheduler:CreateSchedule: one schedule per action, named "
                f"{SCHEDULE_PREFIX}<hash of the event id>; the prefix is as narrow as it gets",
            )
        )

    def grant_verifying(self, verifier: lambda_.Function) -> None:
        """The scheduler may invoke `verifier`; `verifier` may read alarms, on `*`: "To ...
        return information about composite alarms, you must be signed on with the
        cloudwatch:DescribeAlarms permission that is scoped to *"
        (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html);
        scoped to the policies' alarms, a composite alarm would read as missing."""
        self.scheduler_role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[verifier.function_arn]
            )
        )
        role = verifier.role
        assert role is not None
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=["*"])
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
                reason="cloudwatch:DescribeAlarms (read only) returns composite alarms only to a "
                "permission on * (CloudWatch API reference, DescribeAlarms)",
            )
        )
