"""One SNS topic per notification channel of the policy file, with its email subscriptions,
encrypted with a key of the stack's own that CloudWatch may use."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from remediators.core.policy import NotificationChannel


class Notifications(Construct):
    """Topics by channel name; encrypted with a customer managed key, TLS enforced.

    Not the AWS managed key `alias/aws/sns`: its policy cannot let CloudWatch use it, so the
    stack's own alarms (errors, dead letters) could never notify anyone. "To allow these event
    sources to work with encrypted topics ... Use a customer managed KMS key ... allow the AWS
    service to have the kms:GenerateDataKey* and kms:Decrypt permissions":
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
    The functions that publish get the same two on the key with their publish grant, and
    CloudWatch may publish this account's alarms to the topics.
    """

    def __init__(
        self, scope: Construct, construct_id: str, channels: dict[str, NotificationChannel]
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "TopicKey",
            description="autoremediate: encrypts the notification topics (CloudWatch alarms "
            "may use it to publish)",
            enable_key_rotation=True,
            # It protects messages in flight only: nothing to keep once the topics are gone.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        # As the SNS developer guide shows it, without conditions: each topic's own policy
        # admits only this account's alarms (below).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToTheTopics",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        self.topics: dict[str, sns.Topic] = {}
        for name, channel in sorted(channels.items()):
            topic = sns.Topic(
                self,
                f"Channel-{name}",
                display_name=f"autoremediate {name}",
                master_key=self.key,
                enforce_ssl=True,
            )
            # The topic policy (enforce_ssl makes one) replaces SNS's default policy, which let
            # the account's own services publish: CloudWatch needs a statement of its own, or
            # the alarm history says "... is not authorized to perform: SNS:Publish".
            # https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger
            topic.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="CloudWatchAlarmsOfThisAccountPublish",
                    principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                    actions=["sns:Publish"],
                    resources=[topic.topic_arn],
                    conditions={
                        "ArnLike": {
                            "aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:"
                            f"{Aws.ACCOUNT_ID}:alarm:*"
                        },
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    },
                )
            )
            for address in channel.email:
                topic.add_subscription(subscriptions.EmailSubscription(address))
            self.topics[name] = topic

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        """`grantee` may publish to every topic, and use the topics' key as SNS requires of a
        publisher to an encrypted topic (kms:Decrypt, kms:GenerateDataKey*, on this key)."""
        for topic in self.topics.values():
            topic.grant_publish(grantee)
        role = grantee.grant_principal
        if isinstance(role, iam.Role):
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions::AwsSolutions-IAM5[Action::kms:GenerateDataKey*]",
                    reason="publishing to a KMS-encrypted SNS topic needs kms:GenerateDataKey* "
                    "(the data key variants); granted on the topics' own key only",
                )
            )
