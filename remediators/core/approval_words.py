"""An approval request in words, the same on the approval page and in the email: what will
change on which resource, where (account, region, stack), which of a restore's two approvals
this is, and how long is left to decide."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from remediators.core.approval import ApprovalRequest

__all__ = [
    "Where",
    "changed_settings",
    "headline",
    "stage_in_words",
    "target_in_words",
    "time_left",
    "value_in_words",
]

_SERVICES = {
    "dynamodb:table": "DynamoDB table",
    "lambda:function": "Lambda function",
    "apigateway:api": "API Gateway API",
    "wafv2:ipset": "WAF IP set",
}
# A restore asks twice (remediators/flows/restore.py): before it starts, before the cutover.
_STAGES = {
    "restore": "Approval 1 of 2: restore the backup into a new table",
    "cutover": "Approval 2 of 2: switch the application to the restored table",
}


@dataclass(frozen=True)
class Where:
    """The account, region and stack an approval belongs to (read from its execution's ARN,
    `arn:aws:states:REGION:ACCOUNT:execution:...`, and the stack's name)."""

    account: str
    region: str
    stack: str

    @classmethod
    def of(cls, execution_arn: str, stack: str) -> Where:
        parts = execution_arn.split(":")
        region, account = (parts[3], parts[4]) if len(parts) > 4 else ("?", "?")
        return cls(account=account, region=region, stack=stack or "?")

    def __str__(self) -> str:
        return f"account {self.account}, {self.region}, stack {self.stack}"


def target_in_words(resource_key: str) -> str:
    """`dynamodb:table/orders` -> `DynamoDB table orders`; `lambda:function/pay:live` ->
    `Lambda function pay (alias live)`; `wafv2:ipset/REGIONAL/blocked` -> `WAF IP set blocked
    (REGIONAL)`. An unknown kind is shown as it is."""
    kind, _, name = resource_key.partition("/")
    service = _SERVICES.get(kind)
    if service is None or not name:
        return resource_key
    if kind == "lambda:function" and ":" in name:
        function, alias = name.split(":", 1)
        return f"{service} {function} (alias {alias})"
    if kind == "wafv2:ipset" and "/" in name:
        scope, ip_set = name.split("/", 1)
        return f"{service} {ip_set} ({scope})"
    return f"{service} {name}"


def stage_in_words(request: ApprovalRequest) -> str | None:
    """Which of a restore's approvals this is; None for a change with one approval."""
    return _STAGES.get(request.stage or "")


def headline(request: ApprovalRequest) -> str:
    """`Approve a change to DynamoDB table orders?` (the page's heading, the email's subject)."""
    stage = " (1 of 2)" if request.stage == "restore" else ""
    stage = " (2 of 2)" if request.stage == "cutover" else stage
    return f"Approve a change to {target_in_words(request.target)}?{stage}"


def time_left(deadline: datetime, now: datetime) -> str:
    """`in 27 minutes`, `in 3 hours 5 minutes`, `in 2 days 4 hours`, or `passed`."""
    left = deadline - now
    if left <= timedelta(0):
        return "passed"
    minutes = int(left.total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        parts = [(days, "day"), (hours, "hour")]
    elif hours:
        parts = [(hours, "hour"), (minutes, "minute")]
    else:
        return "in less than a minute" if minutes == 0 else f"in {_count(minutes, 'minute')}"
    return "in " + " ".join(_count(n, unit) for n, unit in parts if n)


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def value_in_words(value: Any) -> str:
    """A setting's value for a person: none for empty, numbers and text as they are, a weight
    map as `6: 10%`, anything else as compact JSON."""
    if value is None or value in ({}, [], ""):
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float, str)):
        return str(value)
    weights = isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values())
    if weights and all(0 <= v <= 1 for v in value.values()):
        return ", ".join(f"{k}: {v:.0%}" for k, v in value.items())
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def changed_settings(
    before: dict[str, Any], after: dict[str, Any]
) -> list[tuple[str, str, str, bool]]:
    """(setting, now, after, changed) for every setting either state names, in order."""
    keys = list(dict.fromkeys([*before, *after]))
    rows = []
    for key in keys:
        old, new = before.get(key), after.get(key, before.get(key))
        rows.append((key.replace("_", " "), value_in_words(old), value_in_words(new), old != new))
    return rows
