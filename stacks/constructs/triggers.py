"""EventBridge rules that route the policy file's alarms to the function: entering ALARM (to
act) and returning to OK (to record the recovery)."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from remediators.core.events import ALARM_DETAIL_TYPE, ALARM_SOURCE
from remediators.core.policy import AlarmSelector
from stacks import names

# EventBridge limits an event pattern's size; leave room for the fixed part of the pattern.
MAX_NAMES_CHARS = 1800


class AlarmTriggers(Construct):
    """As few rules as the pattern size limit allows, each matching only the named alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        selectors: list[AlarmSelector],
        function: lambda_.IFunction,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self.rules: list[events.Rule] = []
        for index, chunk in enumerate(chunk_alarm_names(selectors)):
            rule = events.Rule(
                self,
                f"AlarmRule{index}",
                description="autoremediate: alarms of the policy file entering ALARM or OK",
                event_pattern=events.EventPattern(
                    source=[ALARM_SOURCE],
                    detail_type=[ALARM_DETAIL_TYPE],
                    detail={"alarmName": chunk, "state": {"value": ["ALARM", "OK"]}},
                ),
            )
            rule.add_target(
                targets.LambdaFunction(
                    function,
                    dead_letter_queue=dead_letter_queue,
                    retry_attempts=names.RULE_TARGET_RETRIES,
                    max_event_age=Duration.hours(2),
                )
            )
            self.rules.append(rule)


def alarm_name_filter(selector: AlarmSelector) -> Any:
    """The event-pattern value for one selector: the exact name or a prefix filter."""
    if selector.name is not None:
        return selector.name
    return {"prefix": selector.name_prefix}


def chunk_alarm_names(selectors: list[AlarmSelector]) -> list[list[Any]]:
    """Pattern values for all selectors, split so that each rule's pattern stays small."""
    chunks: list[list[Any]] = [[]]
    size = 0
    for selector in selectors:
        value = alarm_name_filter(selector)
        cost = len(json.dumps(value)) + 1
        if chunks[-1] and size + cost > MAX_NAMES_CHARS:
            chunks.append([])
            size = 0
        chunks[-1].append(value)
        size += cost
    return chunks
