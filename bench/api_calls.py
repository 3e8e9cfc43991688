"""Figure 2: AWS API calls per remediation, counted with botocore's event hooks on moto,
next to the minimum each path needs."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3

from bench.common import ROOT, alarm_event, create_table, deployed_handler
from remediators.simulator.lambda_runtime import LambdaContext

# What each path cannot do without: the change itself, and the guardrail and audit writes.
_APPLIED = {
    "dynamodb.PutItem#idempotency": "claim the event id (Powertools idempotency)",
    "ssm.GetParameter": "kill switch (read every event: flipping it takes effect at once)",
    "dynamodb.UpdateItem#claim": "lock + cooldown + circuit breaker in one conditional write "
    "to the resource's guardrail item; its old item also says whether this event id acted "
    "before (beyond the idempotency window), so no audit read",
    "dynamodb.DescribeTable": "before-state",
    "application-auto-scaling.DescribeScalableTargets": "is a scaler in charge?",
    "dynamodb.UpdateTable": "the change",
    "dynamodb.DescribeTable#after": "after-state read back",
    "dynamodb.TransactWriteItems": "audit record + the change in the guardrail item + the "
    "lock's release, atomically",
    "sns.Publish": "notification",
    "scheduler.CreateSchedule": "verification at verify_within",
    "dynamodb.UpdateItem#idempotency": "store the result for duplicates",
}
_ONCE = {
    "dynamodb.Query#carry-over": "once per resource: what the audit trail recorded before the "
    "resource had a guardrail item (an upgrade from a version without one, or 16 idle days)",
    "dynamodb.DescribeLimits": "once per 5 minutes per execution environment: the account's "
    "capacity quotas",
}
MINIMUM: dict[str, dict[str, str]] = {
    "applied: first change to a resource, new execution environment": _APPLIED | _ONCE,
    "duplicate delivery": {"dynamodb.PutItem#idempotency": "the claim fails: already done"},
    "skipped: cooldown": {
        "dynamodb.PutItem#idempotency": "claim",
        "ssm.GetParameter": "kill switch",
        "dynamodb.UpdateItem#claim": "refused by its condition; the old item it returns says "
        "why (cooldown) and that this event id is new",
        "dynamodb.PutItem#audit": "audit record (no lock was taken: nothing to release)",
        "dynamodb.UpdateItem#idempotency": "store the result",
    },
    "applied: a resource changed before, warm execution environment": _APPLIED,
}
# The policy of the count: the repository's, with a 2-minute cooldown so that a second change
# to the same table falls within DescribeLimits' 5 minutes (a warm environment's steady state).
_COOLDOWN = "cooldown: 2m"


def run() -> dict[str, Any]:
    calls: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".")
        calls.append(f"{service}.{operation}")

    def hook() -> None:
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call", count)

    from remediators.core import clock

    policy_text = (ROOT / "remediation.yaml").read_text().replace("cooldown: 15m", _COOLDOWN, 1)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        policy = Path(scratch) / "remediation.yaml"
        policy.write_text(policy_text)
        with deployed_handler(policy, before_load=hook) as (handler, _):
            clock.use_simulated_time(frozen=True)
            create_table("orders")
            paths = {}

            def deliver(path: str, event: dict[str, Any]) -> None:
                calls.clear()
                handler.lambda_handler(event, LambdaContext())
                paths[path] = list(calls)

            first = alarm_event("orders-ddb-throttle", "orders")
            deliver("applied: first change to a resource, new execution environment", first)
            deliver("duplicate delivery", first)
            clock.advance(timedelta(minutes=1))
            deliver("skipped: cooldown", alarm_event("orders-ddb-throttle", "orders"))
            clock.advance(timedelta(minutes=2))
            deliver(
                "applied: a resource changed before, warm execution environment",
                alarm_event("orders-ddb-throttle", "orders"),
            )
            clock.use_real_time()
    for path, made in paths.items():
        minimum = Counter(key.split("#")[0] for key in MINIMUM[path])
        extra = Counter(made) - minimum
        missing = minimum - Counter(made)
        results[path] = {
            "calls": made,
            "count": len(made),
            "minimum": sum(minimum.values()),
            "beyond_minimum": dict(extra),
            "not_made": dict(missing),
            "why": MINIMUM[path],
        }
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
