"""Figure 3: an alarm storm through the real handler and guardrails, one delivery at a time and
through concurrent workers.

10,000 deliveries: 1,000 alarms over 200 tables, each firing 3 times, each event delivered 3
times (at-least-once), plus 50 flapping alarms firing 20 times each. moto runs as a server in
a child process (deployed through CloudFormation as usual), so this process's memory is the
handler's alone. The number of actions the guardrails allow is computed independently by a
plain model of the rules (`expected`) and compared.

Sequential: the deliveries shuffled, 7 simulated seconds apart, one at a time (the lock is
never contended).

Concurrent: the same deliveries through N worker threads (8 by default), in waves. A wave
(tick) is a burst at one instant of the frozen simulated clock: every delivery of the tick is
submitted to the workers at once, the tick ends when all have returned, and only then does the
clock move on, to the next tick. Ticks are as far apart as the deliveries they hold would be
at one per 7 s, so the storm keeps its rate and its span (about 19 hours: cooldown, circuit
breaker and caps still shape the count). A tick holds the next events of 8 tables (drawn at
random, weighted by what each has left), per table up to 2 events of one policy with all
their copies, in the order of the shuffled storm: so the copies of an event run concurrently
(the idempotency layer is contended) and, on most tables, two distinct events of the same
policy do (the resource's lock and its guardrail state are).

Why the count stays exact under any interleaving: within a tick every delivery sees the same
time, and the deliveries of one table all belong to one policy (a table's events of the other
policy wait for a later tick; the schedule is built so). Then, for each table in a tick, the
events whose first delivery it is all meet the same cooldown, circuit breaker and cap: if the
guardrails admit one, exactly one applies (whichever comes first: the others find it in the
cooldown, or are refused `locked` while it holds the lock, which is the same non-change); if
they admit none, none does. A `locked` skip therefore never loses an event's only chance: it
is always an event that the first one's change (or the same refusal) would have stopped
anyway. Which event applies, and how the losers are recorded (cooldown, locked, duplicate),
depends on the interleaving; the number of changes does not, and the model counts per (tick,
table), with no order inside a tick.

A copy of an event whose twin is still running is refused by Powertools idempotency
(IdempotencyAlreadyInProgressError): the invocation fails, and Lambda retries an asynchronous
invocation later (1 minute, then 2: https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html).
Here it is retried in the next tick, where its twin has finished: it is a duplicate. Any other
exception is retried the same way, at most twice, then counted dead-lettered (none is expected).

The GSI propagation-delay fidelity rule is on in the concurrent storm (and only that rule, see
`_gsi_rule`): inside a tick the clock stands still, so no write of the tick reaches an index
before the next tick, the longest delay there is. Guardrails that read the audit table's index
would let a second change through inside the cooldown; guardrails that keep a per-resource
state item with a conditional write do not.

`python -m bench.storm [--concurrent | --sequential] [--workers N] [--deliveries K]`: K
deliveries (the first K of the shuffled storm) to iterate quickly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
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
FACTORS, START = {"storm": 2.0, "flapping": 1.5}, 5
# The concurrent storm: workers, and what a tick holds.
WORKERS, TABLES_PER_TICK, EVENTS_PER_TABLE = 8, 8, 2
# Lambda's asynchronous invocation: an event is retried twice after the first attempt fails.
RETRIES = 2
# The clients the alarm handler's path makes (remediators.core.aws.client), made before the
# workers start: see `_warm`.
SERVICES = (
    "dynamodb",
    "ssm",
    "sns",
    "scheduler",
    "application-autoscaling",
    "cloudwatch",
    "lambda",
    "stepfunctions",
    "sts",
    "sqs",
)

Delivery = tuple[dict[str, Any], str, str]  # event, policy, table


def serve(policy: Path) -> None:
    """Child process: moto server with the stack deployed; prints where, waits for stdin EOF.
    Its DynamoDB writes are atomic, as DynamoDB's conditional writes are
    (`local_aws.atomic_dynamodb_writes`): the concurrent storm's workers contend for them."""
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


def deliveries(seed: int = 7) -> list[Delivery]:
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


def waves(
    plan: list[Delivery],
    tables_per_tick: int = TABLES_PER_TICK,
    events_per_table: int = EVENTS_PER_TABLE,
    seed: int = 7,
) -> list[list[Delivery]]:
    """The concurrent storm's ticks: each the next events (in `plan`'s order, each with all its
    copies) of `tables_per_tick` tables, up to `events_per_table` per table and all of one
    policy, shuffled. Every delivery of `plan` is in exactly one tick."""
    copies: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in plan:
        copies[delivery[0]["id"]].append(delivery)
    queues: dict[str, deque[list[Delivery]]] = defaultdict(deque)
    for event_id, group in copies.items():  # dicts keep first-delivery order
        queues[group[0][2]].append(group)
        assert all(d[0]["id"] == event_id for d in group)
    rng = random.Random(seed)
    ticks = []
    while queues:
        left = sorted(queues)
        chosen = []
        for _ in range(min(tables_per_tick, len(left))):
            table = rng.choices(left, [len(queues[t]) for t in left])[0]
            left.remove(table)
            chosen.append(table)
        tick: list[Delivery] = []
        for table in chosen:
            queue, taken = queues[table], 0
            policy = queue[0][0][1]
            while queue and queue[0][0][1] == policy and taken < events_per_table:
                tick += queue.popleft()
                taken += 1
            if not queue:
                del queues[table]
        rng.shuffle(tick)
        ticks.append(tick)
    return ticks


@dataclass
class Model:
    """What the guardrails allow: the changes, and the decision per (tick, table) group that
    holds an event's first delivery."""

    applied: int = 0
    decisions: dict[tuple[int, str], str] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)


def expected(ticks: list[list[Delivery]], spacing: timedelta, quota: int) -> Model:
    """The guardrails as a plain model, by tick (tick k at `spacing` * k, on a frozen clock):
    an event acts only on its first delivery; per table and tick (all of one policy, see
    `waves`) at most one change, if any event is new there: cooldown per policy and table, at
    most LIMIT changes per table in any WINDOW, capacity capped at the table quota. The
    sequential storm is the case of one delivery per tick, STEP apart."""
    seen: set[str] = set()
    applied: dict[str, list[timedelta]] = defaultdict(list)
    last: dict[tuple[str, str], timedelta] = {}
    capacity: dict[str, int] = defaultdict(lambda: START)
    model = Model()
    for index, tick in enumerate(ticks):
        now = spacing * index
        groups: dict[str, tuple[str, set[str]]] = {}
        for event, policy, table in tick:
            group = groups.setdefault(table, (policy, set()))
            if group[0] != policy:
                raise ValueError(f"tick {index} holds two policies' events on {table}")
            if event["id"] not in seen:
                group[1].add(event["id"])
        seen.update(event["id"] for event, _, _ in tick)
        for table, (policy, new) in groups.items():
            if not new:
                continue  # only redeliveries
            previous = last.get((policy, table))
            raised = min(math.ceil(round(capacity[table] * FACTORS[policy], 6)), quota)
            if previous is not None and now - previous <= COOLDOWN:
                decision = "cooldown"
            elif sum(1 for t in applied[table] if now - t <= WINDOW) >= LIMIT:
                decision = "circuit_open"
            elif raised <= capacity[table]:
                decision = "at_cap"
            else:
                decision = "applied"
                capacity[table] = raised
                applied[table].append(now)
                last[(policy, table)] = now
                model.applied += 1
            model.decisions[index, table] = decision
            model.reasons[decision] += 1
    return model


def expected_actions(plan: list[Delivery], quota: int) -> int:
    """The model's count for the sequential storm."""
    return expected([[delivery] for delivery in plan], STEP, quota).applied


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(workers: int = WORKERS, count: int | None = None) -> dict[str, Any]:
    """Both figures: the sequential storm, and the concurrent one (under "concurrent"), each
    against its own moto server."""
    figures = run_sequential(count)
    figures["concurrent"] = run_concurrent(workers, count)
    return figures


def run_sequential(count: int | None = None) -> dict[str, Any]:
    with _server() as info:
        return _environment(info, lambda: _sequential(info, deliveries()[:count]))


def run_concurrent(workers: int = WORKERS, count: int | None = None) -> dict[str, Any]:
    with _server() as info:
        return _environment(info, lambda: _concurrent(info, deliveries()[:count], workers))


@contextmanager
def _server() -> Iterator[dict[str, Any]]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.storm",
            "--serve",
            str(POLICY),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield json.loads(server.stdout.readline())
    finally:
        if server.stdin:
            server.stdin.close()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # the figures are taken: do not lose them to a slow exit
            print("bench.storm: the moto server did not exit in 60 s; killed", file=sys.stderr)
            server.kill()
            server.wait()


def _environment(info: dict[str, Any], storm: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from remediators.core.aws import reset_clients

    saved = dict(os.environ)
    os.environ.update(
        info["environment"], LAMBDA_TASK_ROOT=info["task_root"], AWS_ENDPOINT_URL=info["endpoint"]
    )
    reset_clients()
    try:
        return storm()
    finally:  # the server goes away with this figure: the next ones use their own
        os.environ.clear()
        os.environ.update(saved)
        reset_clients()


def _create_tables() -> None:
    import boto3

    dynamodb = boto3.client("dynamodb")
    for index in range(TABLES):
        dynamodb.create_table(
            TableName=f"storm-table-{index:03d}",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        )


def _table_quota() -> int:
    """The most capacity a table may have, as DescribeLimits reports it (the action caps its
    raises there: the per-table maximum, or the account's if lower; moto reports 10,000 and
    20,000)."""
    import boto3

    limits = boto3.client("dynamodb").describe_limits()
    return min(limits["TableMaxReadCapacityUnits"], limits["AccountMaxReadCapacityUnits"])


def _applied_in_audit(audit_table: str) -> list[str]:
    """The event ids the audit table holds as applied."""
    import boto3

    return [
        item["event_id"]["S"]
        for page in boto3.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=audit_table,
            FilterExpression="outcome = :applied",
            ExpressionAttributeValues={":applied": {"S": "applied"}},
            ProjectionExpression="event_id",
        )
        for item in page["Items"]
    ]


def _key(result: dict[str, Any]) -> str:
    return "duplicate" if result.get("duplicate") else result["reason"] or result["outcome"]


def _sequential(info: dict[str, Any], plan: list[Delivery]) -> dict[str, Any]:
    from remediators.core import clock

    _create_tables()
    expected_applied = expected_actions(plan, _table_quota())
    outcomes: dict[str, int] = defaultdict(int)
    marks = _marks(len(plan))
    rss: dict[int, float] = {}
    clock.use_simulated_time(frozen=True)
    try:
        with quiet_stdout():
            import remediators.handlers.alarm as module

            handler = importlib.reload(module).lambda_handler
            rss[0] = _rss_mb()
            begun = time.perf_counter()
            for index, (event, _, _) in enumerate(plan, start=1):
                outcomes[_key(handler(event, LambdaContext()))] += 1
                clock.advance(STEP)
                if index in marks:
                    rss[index] = _rss_mb()
            elapsed = time.perf_counter() - begun
    finally:
        clock.use_real_time()
    return {
        "deliveries": len(plan),
        "distinct_events": len({event["id"] for event, _, _ in plan}),
        "applied": outcomes["applied"],
        "applied_in_audit_table": len(_applied_in_audit(info["audit_table"])),
        "expected_applied": expected_applied,
        "outcomes": dict(sorted(outcomes.items())),
        "events_per_second": len(plan) / elapsed,
        "seconds": elapsed,
        "rss_mb": rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _marks(total: int) -> set[int]:
    """Where RSS is read: at each quarter of the deliveries."""
    return {total * quarter // 4 for quarter in range(1, 5)} - {0}


@dataclass
class _Attempt:
    delivery: Delivery
    tick: int  # the tick of its first delivery
    attempt: int = 1


@dataclass
class _Run:
    """What the workers' deliveries returned."""

    outcomes: Counter[str] = field(default_factory=Counter)
    applied: list[str] = field(default_factory=list)  # event ids, from the handler's results
    errors: Counter[str] = field(default_factory=Counter)
    clock_moved: list[int] = field(default_factory=list)  # ticks in which time moved
    rss: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    clients_made: int = 0

    def count(self, attempt: _Attempt, kind: str, result: Any) -> _Attempt | None:
        """Count one attempt's ending; the retry Lambda would make of it, if any."""
        if kind == "ok":
            self.outcomes[_key(result)] += 1
            if result["outcome"] == "applied" and not result.get("duplicate"):
                self.applied.append(result["event_id"])
            return None
        self.outcomes[kind] += 1
        if kind != "in_progress":
            self.errors[result] += 1
        if attempt.attempt > RETRIES:
            self.outcomes["dead_lettered"] += 1
            return None
        return _Attempt(attempt.delivery, attempt.tick, attempt.attempt + 1)


def _concurrent(info: dict[str, Any], plan: list[Delivery], workers: int) -> dict[str, Any]:
    import boto3

    from remediators.core import clock
    from remediators.core.aws import reset_clients

    _create_tables()
    ticks = waves(plan)
    spacing = STEP * max(1, round(len(plan) / len(ticks)))
    model = expected(ticks, spacing, _table_quota())
    tick_of = {event["id"]: index for index, tick in enumerate(ticks) for event, _, _ in tick}
    table_of = {event["id"]: table for event, _, table in plan}

    saved_session = boto3.DEFAULT_SESSION
    boto3.setup_default_session()  # a session of this figure's, with the GSI rule on
    assert boto3.DEFAULT_SESSION is not None
    rule = _gsi_rule(boto3.DEFAULT_SESSION)
    reset_clients()
    clock.use_simulated_time(frozen=True)
    try:
        with quiet_stdout():
            run = _run_ticks(ticks, workers, spacing)
    finally:
        clock.use_real_time()
        boto3.DEFAULT_SESSION = saved_session
        reset_clients()
    audited = _applied_in_audit(info["audit_table"])
    return {
        "deliveries": len(plan),
        "distinct_events": len(table_of),
        "workers": workers,
        "ticks": len(ticks),
        "tick_spacing_s": spacing.total_seconds(),
        "deliveries_per_tick": len(plan) / len(ticks),
        "contended_groups": _contended(ticks),
        "gsi_rule": rule,
        "applied": len(run.applied),
        "applied_in_audit_table": len(audited),
        "expected_applied": model.applied,
        "model_decisions": dict(sorted(model.reasons.items())),
        "outcomes": dict(sorted(run.outcomes.items())),
        "attempts": sum(run.outcomes.values()) - run.outcomes["dead_lettered"],
        "errors": dict(run.errors),
        "divergences": _divergences(model, audited, run.applied, tick_of, table_of),
        "clock_moved_in_ticks": run.clock_moved,
        "clients_made_by_workers": run.clients_made,
        "events_per_second": len(plan) / run.seconds,
        "seconds": run.seconds,
        "rss_mb": run.rss,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_ticks(ticks: list[list[Delivery]], workers: int, spacing: timedelta) -> _Run:
    """Deliver tick by tick through `workers` threads; the clock moves between ticks. A
    failed attempt is retried in the next tick (after the last, until none is left)."""
    import remediators.handlers.alarm as module
    from remediators.core import clock
    from remediators.core.aws import _client

    module = importlib.reload(module)
    clients = _warm(module)
    total = sum(len(tick) for tick in ticks)
    marks, done, run = _marks(total), 0, _Run()
    run.rss[0] = _rss_mb()
    begun = time.perf_counter()
    carried: list[_Attempt] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storm") as pool:
        index = 0
        while index < len(ticks) or carried:
            fresh = [_Attempt(d, index) for d in (ticks[index] if index < len(ticks) else [])]
            batch, at = carried + fresh, clock.now()
            results = list(pool.map(lambda a: _deliver(module.lambda_handler, a), batch))
            if clock.now() != at:
                run.clock_moved.append(index)
            carried = [
                retry
                for attempt, (kind, result) in zip(batch, results, strict=True)
                if (retry := run.count(attempt, kind, result)) is not None
            ]
            done += len(fresh)
            for mark in sorted(m for m in marks if m <= done and m not in run.rss):
                run.rss[mark] = _rss_mb()
            clock.advance(spacing)
            index += 1
    run.seconds = time.perf_counter() - begun
    run.clients_made = int(_client.cache_info().currsize) - clients
    return run


def _gsi_rule(session: Any) -> str:
    """Put the GSI propagation-delay rule, alone, on `session`, as `fidelity.install` puts a
    rule (the hook that keeps the API parameters, then the rule's). Not `install` itself: it
    puts every rule on by default too, and two of them would make the storm another storm:
    dynamodb-update-table-is-asynchronous keeps a raised table UPDATING for 20 s, and the
    action waits for ACTIVE with `clock.sleep`, which moves the process-global clock under
    every worker (and the sequential storm's schedule); dynamodb-capacity-limits enforces the
    account's total, which 200 tables raised towards the per-table maximum exceed (the storm's
    model knows only the per-table cap)."""
    from remediators.simulator import fidelity
    from remediators.simulator.fidelity import dynamodb_gsi_eventually_consistent as gsi

    session.events.register("before-parameter-build", fidelity._keep_api_params)
    gsi.RULE.register(session.events, lambda: None)
    return gsi.RULE.name


def _warm(module: Any) -> int:
    """What an execution environment builds on its first invocation, built once before the
    workers start, in this thread: the cached clients (made from the one default session,
    which is not thread-safe, see docs/benchmarks.md), the remediator, and the logger's keys.
    The number of cached clients, to check that the workers made none."""
    from remediators.core.aws import _client, client
    from remediators.core.settings import Settings

    for service in SERVICES:
        client(service)
    module._remediator(Settings.from_env())
    # An event no policy matches: skipped (no_policy), nothing acts, and the Powertools
    # logger's and idempotency layer's first-invocation set-up happens here.
    module.lambda_handler(alarm_event("warm-up", "no-such-table"), LambdaContext())
    return int(_client.cache_info().currsize)


def _deliver(handler: Callable[..., Any], attempt: _Attempt) -> tuple[str, Any]:
    """One invocation: ("ok", its result), ("in_progress", None) when its twin is still
    running, or ("error", the exception's type and message)."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
    )

    try:
        return "ok", handler(attempt.delivery[0], LambdaContext())
    except IdempotencyAlreadyInProgressError:
        return "in_progress", None
    except Exception as error:
        return "error", f"{type(error).__name__}: {str(error)[:200]}"


def _contended(ticks: list[list[Delivery]]) -> int:
    """(tick, table) groups with two distinct events or more: where the lock is contended."""
    return sum(
        1
        for tick in ticks
        for count in Counter(table for table, _ in {(t, e["id"]) for e, _, t in tick}).values()
        if count > 1
    )


def _divergences(
    model: Model,
    audited: list[str],
    by_handler: list[str],
    tick_of: dict[str, int],
    table_of: dict[str, str],
) -> list[dict[str, Any]]:
    """Each (tick, table) group where the changes recorded differ from the model's, with the
    events that applied there; and events applied per the audit table but not the handler's
    results (or the reverse)."""
    recorded: dict[tuple[int, str], list[str]] = defaultdict(list)
    for event_id in audited:
        if event_id in tick_of:
            recorded[tick_of[event_id], table_of[event_id]].append(event_id)
    found = []
    for group in sorted(set(recorded) | {g for g, d in model.decisions.items() if d == "applied"}):
        want = 1 if model.decisions.get(group) == "applied" else 0
        if len(recorded[group]) != want:
            found.append(
                {
                    "tick": group[0],
                    "table": group[1],
                    "model": model.decisions.get(group, "no new event"),
                    "applied": sorted(recorded[group]),
                }
            )
    for event_id in sorted(set(audited) ^ set(by_handler)):
        side = "audit table only" if event_id in audited else "handler result only"
        found.append({"event": event_id, "applied": side})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storm")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--concurrent", action="store_true", help="only the concurrent storm")
    mode.add_argument("--sequential", action="store_true", help="only the sequential storm")
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--deliveries", type=int, default=None, help="the first K deliveries")
    args = parser.parse_args()
    if args.sequential:
        figures = run_sequential(args.deliveries)
    elif args.concurrent:
        figures = run_concurrent(args.workers, args.deliveries)
    else:
        figures = run(args.workers, args.deliveries)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(Path(sys.argv[2]))
    else:
        main()
