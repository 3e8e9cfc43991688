"""The stack watches itself: its alarms reach the operators (with the simulator's fidelity
rules, CloudWatch runs an alarm's SNS actions only if the topic's key lets it)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest


@pytest.mark.parametrize(
    "alarm", ["remediator-errors", "verification-errors", "expiry-errors", "dead-letters-0"]
)
def test_the_stack_s_own_alarms_reach_the_operators(
    function_env: dict[str, str], inbox: Any, alarm: str
) -> None:
    # Given the deployed stack, its ops topic read by the operators' inbox
    name = f"autoremediate-Autoremediate-{alarm}"

    # When one of its own alarms goes off
    boto3.client("cloudwatch").set_alarm_state(
        AlarmName=name, StateValue="ALARM", StateReason="threshold crossed (simulated)"
    )

    # Then CloudWatch's notification arrives (a topic with the AWS managed key never would)
    assert [message["Subject"] for message in inbox()] == [f'ALARM: "{name}" in us-east-1']
