"""CloudWatch runs an alarm's SNS actions when the alarm changes state, and cannot publish to a
topic whose KMS key does not let it.

AWS: "Several AWS services publish events to Amazon SNS topics. To allow these event sources to
work with encrypted topics, you must ... Use a customer managed KMS key ... allow the AWS service
to have the kms:GenerateDataKey* and kms:Decrypt permissions":
https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
The AWS managed key `alias/aws/sns` cannot be given to CloudWatch (its policy cannot be edited):
such an alarm's action never runs; the alarm history says "Failed to execute action ...
CloudWatch Alarms does not have authorization to access the SNS topic encryption key." And the
topic's own policy must let CloudWatch publish: a topic policy replaces the default one (which
admits the account's services), so without a statement for cloudwatch.amazonaws.com the
history says "... is not authorized to perform: SNS:Publish":
https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger

moto runs no alarm action at all. The rule runs them after SetAlarmState changes an alarm's
state (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html:
"When the updated state differs from the previous value, the action ... is invoked"), as
CloudWatch does:
it publishes the alarm's message to each SNS topic of the new state's actions whose key allows
CloudWatch, and records a failure for the others (`deliveries`; moto has no alarm history).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from remediators.simulator.fidelity import Caller, api_params

__all__ = ["RULE", "AlarmActions", "Delivery"]

logger = logging.getLogger(__name__)

AWS_MANAGED_SNS_KEY = "alias/aws/sns"
_PRINCIPAL = "cloudwatch.amazonaws.com"
_STATE_BEFORE = "fidelity_alarm_state_before"
_NEEDED = ("kms:Decrypt", "kms:GenerateDataKey")
_NO_KEY_ACCESS = (
    "CloudWatch Alarms does not have authorization to access the SNS topic encryption key."
)
_ACTIONS_OF_STATE = {
    "ALARM": "AlarmActions",
    "OK": "OKActions",
    "INSUFFICIENT_DATA": "InsufficientDataActions",
}


@dataclass(frozen=True)
class Delivery:
    """One alarm action CloudWatch ran (or failed to)."""

    alarm: str
    state: str
    topic: str
    error: str | None = None


class AlarmActions:
    name = "cloudwatch-alarm-actions-need-the-topic-key"
    doc = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.deliveries: list[Delivery] = []

    def register(self, events: Any, caller: Caller) -> None:
        with self._lock:
            self.deliveries.clear()  # those of the last installed session
        sessions: dict[str, Any] = {}  # by region: a session without the hooks

        def client(service: str, region: str) -> Any:
            import boto3

            if region not in sessions:
                sessions[region] = boto3.Session(region_name=region)
            return sessions[region].client(service)

        def state_before(context: dict[str, Any], **_: Any) -> None:
            params, region = api_params(context), str(context.get("client_region"))
            alarms = client("cloudwatch", region).describe_alarms(AlarmNames=[params["AlarmName"]])
            context[_STATE_BEFORE] = {
                a["AlarmName"]: a["StateValue"] for a in alarms["MetricAlarms"]
            }

        def run_actions(http_response: Any, context: dict[str, Any], **_: Any) -> None:
            if http_response.status_code >= 300:
                return
            params = api_params(context)
            region = str(context.get("client_region"))
            name, state = str(params["AlarmName"]), str(params["StateValue"])
            alarms = client("cloudwatch", region).describe_alarms(AlarmNames=[name])
            for alarm in alarms.get("MetricAlarms", []):
                # "When the updated state differs from the previous value, the action configured
                # for the appropriate state is invoked" (SetAlarmState, API reference).
                unchanged = context.get(_STATE_BEFORE, {}).get(alarm["AlarmName"]) == state
                if unchanged or not alarm.get("ActionsEnabled", True):
                    continue
                for action in alarm.get(_ACTIONS_OF_STATE.get(state, ""), []):
                    if action.startswith("arn:aws:sns:"):
                        self._publish(alarm, state, action, params, client)

        events.register("before-call.cloudwatch.SetAlarmState", state_before)
        events.register("after-call.cloudwatch.SetAlarmState", run_actions)

    def _publish(
        self, alarm: dict[str, Any], state: str, topic: str, params: dict[str, Any], client: Any
    ) -> None:
        region = topic.split(":")[3]
        attributes = client("sns", region).get_topic_attributes(TopicArn=topic)["Attributes"]
        key = attributes.get("KmsMasterKeyId")
        error = None
        if not _admits_cloudwatch(attributes.get("Policy"), alarm["AlarmArn"]):
            error = (
                f'Failed to execute action {topic}. Received error: "{alarm["AlarmArn"]} is not '
                f'authorized to perform: SNS:Publish on resource: {topic}"'
            )
        elif key and not _lets_cloudwatch_use(key, client("kms", region)):
            error = f'Failed to execute action {topic}. Received error: "{_NO_KEY_ACCESS}"'
        if error is not None:
            logger.warning("alarm %s: %s", alarm["AlarmName"], error)
        else:
            message = {
                "AlarmName": alarm["AlarmName"],
                "AlarmDescription": alarm.get("AlarmDescription"),
                "NewStateValue": state,
                "NewStateReason": params.get("StateReason", ""),
                "AlarmArn": alarm["AlarmArn"],
            }
            client("sns", region).publish(
                TopicArn=topic,
                Subject=f'{state}: "{alarm["AlarmName"]}" in {region}'[:100],
                Message=json.dumps(message),
            )
        with self._lock:
            self.deliveries.append(Delivery(alarm["AlarmName"], state, topic, error))


def _admits_cloudwatch(policy_text: str | None, alarm_arn: str) -> bool:
    """Whether the topic policy lets CloudWatch publish this alarm (no policy: SNS's default,
    which admits the account's own). Deny first, then Allow; a condition this cannot decide
    does not hold."""
    if not policy_text:
        return True
    account = alarm_arn.split(":")[4]
    context = {
        "aws:sourcearn": alarm_arn,
        "aws:sourceaccount": account,
        "aws:sourceowner": account,
        "aws:securetransport": "true",  # CloudWatch publishes over TLS
    }
    policy = json.loads(policy_text) if isinstance(policy_text, str) else policy_text
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    applying = [s for s in statements if _applies_to_cloudwatch(s, context)]
    return any(s.get("Effect") == "Allow" for s in applying) and not any(
        s.get("Effect") == "Deny" for s in applying
    )


def _applies_to_cloudwatch(statement: dict[str, Any], context: dict[str, str]) -> bool:
    """Whether `statement` covers CloudWatch publishing, its conditions met by `context`."""
    principal = statement.get("Principal")
    if isinstance(principal, dict):
        listed = [*_as_list(principal.get("Service", [])), *_as_list(principal.get("AWS", []))]
        covered = any(p in (_PRINCIPAL, "*") for p in listed)
    else:
        covered = principal == "*"
    actions = _as_list(statement.get("Action", []))
    publishes = any(fnmatch.fnmatchcase("sns:publish", a.lower()) for a in actions)
    return (
        covered
        and publishes
        and all(
            _holds(operator, context.get(key.lower()), [str(e) for e in _as_list(expected)])
            for operator, conditions in statement.get("Condition", {}).items()
            for key, expected in conditions.items()
        )
    )


def _holds(operator: str, value: str | None, wanted: list[str]) -> bool:
    """One condition, for the operators topic policies use; any other does not hold."""
    if value is None:
        return False
    if operator in ("StringEquals", "ArnEquals", "Bool"):
        return value.lower() in [w.lower() for w in wanted]
    if operator in ("StringLike", "ArnLike"):
        return any(fnmatch.fnmatchcase(value, w) for w in wanted)
    return False


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str | dict) else list(value)


def _lets_cloudwatch_use(key: str, kms: Any) -> bool:
    """Whether the key's policy allows CloudWatch kms:Decrypt and kms:GenerateDataKey*. The AWS
    managed SNS key never does (its policy admits only SNS, for the account's principals)."""
    if key == AWS_MANAGED_SNS_KEY or key.endswith(f":{AWS_MANAGED_SNS_KEY}"):
        return False
    metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    if metadata.get("KeyManager") == "AWS":
        return False
    raw = kms.get_key_policy(KeyId=metadata["KeyId"], PolicyName="default")["Policy"]
    # A string from AWS; moto hands back a policy CloudFormation gave it as an object.
    policy = raw if isinstance(raw, dict) else json.loads(raw)
    statements = policy.get("Statement", [])
    allowed: set[str] = set()
    for statement in [statements] if isinstance(statements, dict) else statements:
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        if statement.get("Effect") != "Allow" or _PRINCIPAL not in services:
            continue
        actions = statement.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            allowed |= {needed for needed in _NEEDED if fnmatch.fnmatchcase(needed, action)}
    return allowed == set(_NEEDED)


RULE = AlarmActions()
