"""Figure 4: warm invocation time of the handler for one event, minus the time spent in the
AWS calls it makes (timed separately with botocore's before-call / after-call hooks)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3

from bench.common import ROOT, alarm_event, create_table, deployed_handler, median
from remediators.simulator.lambda_runtime import LambdaContext


def run(events: int = 60) -> dict[str, Any]:
    started: dict[int, float] = {}
    in_calls = [0.0]

    def before(**kwargs: Any) -> None:
        started[id(kwargs["context"])] = time.perf_counter()

    def after(**kwargs: Any) -> None:
        begun = started.pop(id(kwargs["context"]), None)
        if begun is not None:
            in_calls[0] += time.perf_counter() - begun

    def hook() -> None:
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call", before)
        boto3.DEFAULT_SESSION.events.register("after-call", after)

    totals, overheads = [], []
    with deployed_handler(ROOT / "bench" / "storm-policy.yaml", before_load=hook) as (handler, _):
        for index in range(events + 1):
            create_table(f"storm-table-{index:03d}")
        handler.lambda_handler(alarm_event("storm-warmup", "storm-table-000"), LambdaContext())
        for index in range(1, events + 1):
            table = f"storm-table-{index:03d}"
            in_calls[0] = 0.0
            begun = time.perf_counter()
            result = handler.lambda_handler(alarm_event(f"storm-{index}", table), LambdaContext())
            total = time.perf_counter() - begun
            assert result["outcome"] == "applied", result
            totals.append(total)
            overheads.append(total - in_calls[0])
    return {
        "events": events,
        "invocation_ms": median(totals) * 1000,
        "aws_calls_ms": (median(totals) - median(overheads)) * 1000,
        "overhead_ms": median(overheads) * 1000,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
