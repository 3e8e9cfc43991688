"""The operators' inboxes: an SQS queue subscribed to every notification topic of the stack."""

from __future__ import annotations

import json

import boto3

from remediators.simulator.deploy import DeployedStack

__all__ = ["Inbox"]


class Inbox:
    """An SQS queue subscribed to every notification topic, standing in for the inboxes."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    @classmethod
    def subscribe(cls, stack: DeployedStack) -> Inbox:
        sqs, sns = boto3.client("sqs"), boto3.client("sns")
        queue_url = sqs.create_queue(QueueName="simulator-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        for logical_id, resource in stack.template["Resources"].items():
            if resource["Type"] == "AWS::SNS::Topic":
                sns.subscribe(
                    TopicArn=stack.resources[logical_id], Protocol="sqs", Endpoint=queue_arn
                )
        return cls(queue_url)

    def drain(self) -> list[dict[str, str]]:
        sqs = boto3.client("sqs")
        messages: list[dict[str, str]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not batch.get("Messages"):
                return messages
            for message in batch["Messages"]:
                envelope = json.loads(message["Body"])
                messages.append(
                    {"subject": envelope.get("Subject", ""), "message": envelope["Message"]}
                )
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
