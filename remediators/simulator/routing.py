"""EventBridge's part: match an event against the deployed rules and find their targets.

moto's EventBridge cannot deliver to Lambda targets, so the rules are read back from the
local AWS and matched here with moto's own event-pattern matcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    """A rule that matched an event, and one of its targets."""

    rule: str
    target_arn: str


class Router:
    """The enabled rules of the default event bus, as deployed."""

    def __init__(self) -> None:
        from moto.events.models import EventPattern

        events = boto3.client("events")
        self._rules: list[tuple[str, Any, list[str]]] = []
        for rule in events.list_rules(EventBusName="default")["Rules"]:
            if rule.get("State") != "ENABLED" or "EventPattern" not in rule:
                continue
            targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
            self._rules.append(
                (
                    rule["Name"],
                    EventPattern.load(rule["EventPattern"]),
                    [target["Arn"] for target in targets],
                )
            )

    def route(self, event: dict[str, Any]) -> list[Route]:
        """Every (rule, target) the event would be delivered to."""
        return [
            Route(rule=name, target_arn=arn)
            for name, pattern, arns in self._rules
            if pattern.matches_event(event)
            for arn in arns
        ]
