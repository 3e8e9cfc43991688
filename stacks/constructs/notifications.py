"""One SNS topic per notification channel of the policy file, with its email subscriptions."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from remediators.core.policy import NotificationChannel


class Notifications(Construct):
    """Topics by channel name; encrypted with the AWS-managed SNS key, TLS enforced."""

    def __init__(
        self, scope: Construct, construct_id: str, channels: dict[str, NotificationChannel]
    ) -> None:
        super().__init__(scope, construct_id)
        key = kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns")
        self.topics: dict[str, sns.Topic] = {}
        for name, channel in sorted(channels.items()):
            topic = sns.Topic(
                self,
                f"Channel-{name}",
                display_name=f"autoremediate {name}",
                master_key=key,
                enforce_ssl=True,
            )
            for address in channel.email:
                topic.add_subscription(subscriptions.EmailSubscription(address))
            self.topics[name] = topic
