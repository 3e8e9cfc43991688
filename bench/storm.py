"""Figure 3: an alarm storm through the real handler and guardrails.

10,000 deliveries: 1,000 alarms over 200 tables, each firing 3 times, each event delivered 3
times (at-least-once), plus 50 flapping alarms firing 20 times each; shuffled, 7 simulated
seconds apart. moto runs as a server in a child process (deployed through CloudFormation as
usual), so this process's memory is the handler's alone. The number of actions the
guardrails allow is computed independently by a plain model of the rules and compared.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.common import ROOT, alarm_event, quiet_stdout
from remediators.simulator.lambda_runtime import LambdaContext

POLICY = ROOT / "bench" / "storm-policy.yaml"
TABLES, ALARMS, FIRES, COPIES, FLAPPING, FLAPS = 200, 1000, 3, 3, 50, 20
STEP = timedelta(seconds=7)
# As in storm-policy.yaml; the limit is high enough that cooldown, duplicates and caps all
# shape the count (with 3 the circuit breaker alone would decide it).
COOLDOWN, WINDOW, LIMIT = timedelta(minutes=15), timedelta(days=1), 20
FACTORS, START, QUOTA = {"storm": 2.0, "flapping": 1.5}, 5, 40_000


def serve(policy: Path) -> None:
    """Child process: moto server with the stack deployed; prints where, waits for stdin EOF."""
    import boto3

    import remediators.actions  # noqa: F401
    from remediators.simulator.deploy import deploy, synthesize
    from remediators.simulator.local_aws import local_aws

    assembly = synthesize(policy)
    with local_aws() as aws:
        stack = deploy(assembly, aws)
        environment = boto3.client("lambda").get_function_configuration(
            FunctionName=stack.outputs["RemediatorFunctionName"]
        )["Environment"]["Variables"]
        task_root = next(p for p in assembly.iterdir() if p.name.startswith("asset."))
        print(
            json.dumps(
                {
                    "endpoint": aws.endpoint_url,
                    "environment": environment,
                    "task_root": str(task_root),
                    "audit_table": stack.outputs["AuditTableName"],
                }
            ),
            flush=True,
        )
        sys.stdin.read()


def deliveries(seed: int = 7) -> list[tuple[dict[str, Any], str, str]]:
    """(event, policy, table) per delivery, shuffled."""
    events = []
    for alarm in range(ALARMS):
        table = f"storm-table-{alarm % TABLES:03d}"
        for _ in range(FIRES):
            event = alarm_event(f"storm-{alarm:04d}", table)
            events += [(event, "storm", table)] * COPIES
    for alarm in range(FLAPPING):
        table = f"storm-table-{alarm * 4:03d}"
        events += [
            (alarm_event(f"flap-{alarm:02d}", table), "flapping", table) for _ in range(FLAPS)
        ]
    random.Random(seed).shuffle(events)
    return events


def expected_actions(plan: list[tuple[dict[str, Any], str, str]]) -> int:
    """The guardrails as a plain model: first delivery only, cooldown per policy and table,
    at most LIMIT changes per table in any WINDOW, capacity capped at the table quota (all at
    STEP intervals, on a frozen clock)."""
    seen: set[str] = set()
    applied: dict[str, list[timedelta]] = defaultdict(list)
    last: dict[tuple[str, str], timedelta] = {}
    capacity: dict[str, int] = defaultdict(lambda: START)
    actions = 0
    for index, (event, policy, table) in enumerate(plan):
        now = STEP * index
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        previous = last.get((policy, table))
        if previous is not None and now - previous <= COOLDOWN:
            continue
        if sum(1 for t in applied[table] if now - t <= WINDOW) >= LIMIT:
            continue
        raised = min(math.ceil(round(capacity[table] * FACTORS[policy], 6)), QUOTA)
        if raised <= capacity[table]:
            continue  # at cap
        capacity[table] = raised
        applied[table].append(now)
        last[(policy, table)] = now
        actions += 1
    return actions


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run() -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.storm", "--serve", str(POLICY)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        return _storm(info)
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=60)


def _storm(info: dict[str, Any]) -> dict[str, Any]:
    from remediators.core.aws import reset_clients

    saved = dict(os.environ)
    os.environ.update(
        info["environment"], LAMBDA_TASK_ROOT=info["task_root"], AWS_ENDPOINT_URL=info["endpoint"]
    )
    reset_clients()
    try:
        return _deliver_all(info)
    finally:  # the server goes away with this figure: the next ones use their own
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()


def _deliver_all(info: dict[str, Any]) -> dict[str, Any]:
    import boto3

    from remediators.core import clock

    dynamodb = boto3.client("dynamodb")
    for index in range(TABLES):
        dynamodb.create_table(
            TableName=f"storm-table-{index:03d}",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        )
    plan = deliveries()
    expected = expected_actions(plan)
    outcomes: dict[str, int] = defaultdict(int)
    rss: dict[int, float] = {}
    clock.use_simulated_time(frozen=True)
    with quiet_stdout():
        import remediators.handlers.alarm as module

        handler = importlib.reload(module).lambda_handler
        rss[0] = _rss_mb()
        begun = time.perf_counter()
        for index, (event, _, _) in enumerate(plan, start=1):
            result = handler(event, LambdaContext())
            key = "duplicate" if result.get("duplicate") else result["reason"] or result["outcome"]
            outcomes[key] += 1
            clock.advance(STEP)
            if index % 2500 == 0:
                rss[index] = _rss_mb()
        elapsed = time.perf_counter() - begun
    clock.use_real_time()
    audited = sum(
        page["Count"]
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=info["audit_table"],
            FilterExpression="outcome = :applied",
            ExpressionAttributeValues={":applied": {"S": "applied"}},
        )
    )
    return {
        "deliveries": len(plan),
        "distinct_events": len({event["id"] for event, _, _ in plan}),
        "applied": outcomes["applied"],
        "applied_in_audit_table": audited,
        "expected_applied": expected,
        "outcomes": dict(sorted(outcomes.items())),
        "events_per_second": len(plan) / elapsed,
        "seconds": elapsed,
        "rss_mb": rss,
        "peak_rss_mb": __import__("resource")
        .getrusage(__import__("resource").RUSAGE_SELF)
        .ru_maxrss
        / 1024,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
    else:
        print(json.dumps(run(), indent=2))
