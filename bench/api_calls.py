"""Figure 2: AWS API calls per remediation, counted with botocore's event hooks on moto,
next to the minimum each path needs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

import boto3

from bench.common import ROOT, alarm_event, create_table, deployed_handler
from remediators.simulator.lambda_runtime import LambdaContext

# What each path cannot do without: the change itself, and the guardrail and audit writes.
MINIMUM: dict[str, dict[str, str]] = {
    "applied (dynamodb.scale_capacity)": {
        "dynamodb.PutItem#idempotency": "claim the event id (Powertools idempotency)",
        "dynamodb.GetItem#audit": "has this event id acted before (beyond the idempotency window)?",
        "ssm.GetParameter": "kill switch",
        "dynamodb.PutItem#lock": "take the resource lock",
        "dynamodb.Query": "cooldown and circuit breaker (one query serves both)",
        "dynamodb.DescribeTable": "before-state",
        "application-auto-scaling.DescribeScalableTargets": "is a scaler in charge?",
        "dynamodb.UpdateTable": "the change",
        "dynamodb.DescribeTable#after": "after-state read back",
        "dynamodb.PutItem#audit": "audit record",
        "sns.Publish": "notification",
        "scheduler.CreateSchedule": "verification at verify_within",
        "dynamodb.DeleteItem#lock": "release the lock",
        "dynamodb.UpdateItem#idempotency": "store the result for duplicates",
    },
    "duplicate delivery": {"dynamodb.PutItem#idempotency": "the claim fails: already done"},
    "skipped: cooldown": {
        "dynamodb.PutItem#idempotency": "claim",
        "dynamodb.GetItem#audit": "acted before?",
        "ssm.GetParameter": "kill switch",
        "dynamodb.PutItem#lock": "lock",
        "dynamodb.Query": "cooldown",
        "dynamodb.PutItem#audit": "audit record",
        "dynamodb.DeleteItem#lock": "unlock",
        "dynamodb.UpdateItem#idempotency": "store the result",
    },
}


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

    results: dict[str, Any] = {}
    with deployed_handler(ROOT / "remediation.yaml", before_load=hook) as (handler, _):
        clock.use_simulated_time(frozen=True)
        create_table("orders")
        paths = {}
        first = alarm_event("orders-ddb-throttle", "orders")
        calls.clear()
        handler.lambda_handler(first, LambdaContext())
        paths["applied (dynamodb.scale_capacity)"] = list(calls)
        calls.clear()
        handler.lambda_handler(first, LambdaContext())
        paths["duplicate delivery"] = list(calls)
        clock.advance(timedelta(minutes=5))
        calls.clear()
        handler.lambda_handler(alarm_event("orders-ddb-throttle", "orders"), LambdaContext())
        paths["skipped: cooldown"] = list(calls)
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
