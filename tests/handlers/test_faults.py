"""Faults on every AWS call of every action (issue 8), on the deployed stack.

Each action's happy path is run once with botocore hooks recording the calls it makes (inside
its `plan`, `apply` and `read_back`), so a call added to an action is covered without editing
this file. Then, for each of those calls, the real botocore error is injected where botocore
meets it, from a `before-send` hook: an HTTP response in the service's protocol (throttling,
500, 503, AccessDenied, not-found), or a connect or read timeout. botocore's own retry handler
(standard mode, 5 retries) sees them, and the tests count the attempts:

- transient (the first 2 attempts fail): retried with backoff; the event ends `applied` once,
  with the planned change and one applied audit record;
- permanent (every attempt fails; not retried): `failed` and escalated with the error in the
  record, or `skipped: target_not_found`, with the resource unchanged; a failed read-back
  after the change is recorded as applied, with the error;
- persistent (every attempt of the change fails): Lambda's retries, then the dead-letter queue
  with the event and the error, and `remediate dead-letters --replay` applies it once;
- lost answer (the change goes through, its answer times out, and AWS refuses the retry as a
  repeat): the change is made once and recorded as applied, not failed and made again.

Events are delivered to the deployed remediator function by the simulator's Lambda runtime
(in-process, with the deployed environment), one stack for the module; between tests the
stack's state tables are emptied and the resources created again.
"""

from __future__ import annotations

import functools
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.endpoint
import botocore.session
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from remediators.core import clock
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client, reset_clients
from remediators.core.operations import dead_letters, handler_functions, replay
from remediators.core.policy import load_policy_file
from remediators.core.registry import registered_actions
from remediators.simulator.deploy import DeployedStack, assets_bucket, async_invoke_settings, deploy
from remediators.simulator.fidelity.dynamodb_gsi_eventually_consistent import PROPAGATION
from remediators.simulator.fidelity.dynamodb_table_updating import UPDATING_FOR
from remediators.simulator.fidelity.lambda_update_in_progress import IN_PROGRESS_FOR
from remediators.simulator.lambda_runtime import Invocation, LambdaRuntime
from remediators.simulator.local_aws import LocalAws
from remediators.simulator.resources import create_resources, read_function, read_ip_set, read_table
from remediators.simulator.scenario import Bounds, FunctionSpec, IpSetSpec, Resources, TableSpec
from tests.conftest import ROOT, create_blocks_table, load_event

# --- the happy paths: one per action, and the autoscaled table's own path -------------------

LOG_GROUP = "/aws/apigateway/shop-access"
# Two offenders over shop-abusers' threshold (500 requests with status >= 500 in the window)
# and a quiet client.
OFFENDERS = {"198.51.100.20": 520, "198.51.100.21": 510, "192.0.2.99": 40}
TRANSIENT_FAILURES = 2  # attempts that fail before one succeeds (botocore allows 5)
# remediators.core.aws: standard retry mode with `max_attempts: 5`, which botocore's Config takes
# as retries: 5 retries after the first attempt.
MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class HappyPath:
    """An action's path through the deployed policies: the resource it starts from, the alarm
    that calls for it, and the resource as it must be once the action has applied."""

    id: str
    policy: str
    alarm: str
    target: str  # the resource key its audit records name
    resources: Resources
    planned: dict[str, Any]
    # The part of a recorded `planned` / `after` state that must agree once applied.
    applied_part: Callable[[dict[str, Any]], Any]

    def read(self) -> dict[str, Any]:
        """The resource as the test sees it once any update is done (a table stays UPDATING
        with its old capacity for a while: the fidelity rule), and the blocks ledger."""
        state: dict[str, Any] = {}
        if self.resources.dynamodb_tables:
            clock.advance(UPDATING_FOR)
        for table in self.resources.dynamodb_tables:
            state[table.name] = read_table(table.name)
        for function in self.resources.lambda_functions:
            state[function.name] = read_function(function.name)
        for ip_set in self.resources.waf_ip_sets:
            state[ip_set.name] = read_ip_set(ip_set)["addresses"]
            state["ledger"] = _ledger()
        return state


def _autoscaled_bounds(state: dict[str, Any]) -> dict[str, Any]:
    return {key: (b["min"], b["max"]) for key, b in state["autoscaling"].items()}


PATHS = [
    HappyPath(
        id="dynamodb.scale_capacity",
        policy="orders-throttling",
        alarm="orders-ddb-throttle",
        target="dynamodb:table/orders",
        resources=Resources(dynamodb_tables=[TableSpec(name="orders", read=5, write=5)]),
        planned={"orders": {"billing": "PROVISIONED", "read": 10, "write": 10}},
        applied_part=lambda state: state["capacity"],
    ),
    HappyPath(
        id="dynamodb.scale_capacity[autoscaled]",
        policy="sessions-throttling",
        alarm="sessions-throttling-dynamodb-throttling",
        target="dynamodb:table/sessions",
        resources=Resources(
            dynamodb_tables=[
                TableSpec(
                    name="sessions",
                    read=50,
                    write=20,
                    autoscaling={"read": Bounds(min=10, max=50), "write": Bounds(min=5, max=100)},
                )
            ]
        ),
        # factor 1.5: each maximum raised, the capacity left to the scaler.
        planned={
            "sessions": {
                "billing": "PROVISIONED",
                "read": 50,
                "write": 20,
                "autoscaling": {"read": {"min": 10, "max": 75}, "write": {"min": 5, "max": 150}},
            }
        },
        applied_part=_autoscaled_bounds,
    ),
    HappyPath(
        id="lambda.raise_timeout",
        policy="api-timeouts",
        alarm="api-handler-timeouts",
        target="lambda:function/api-handler",
        resources=Resources(lambda_functions=[FunctionSpec(name="api-handler", timeout=10)]),
        planned={"api-handler": {"timeout": 15, "memory": 128}},
        applied_part=lambda state: (state["timeout"], state["memory"]),
    ),
    HappyPath(
        id="lambda.raise_concurrency",
        policy="api-throttles",
        alarm="api-handler-throttles",
        target="lambda:function/api-handler",
        resources=Resources(lambda_functions=[FunctionSpec(name="api-handler", reserved=10)]),
        planned={"api-handler": {"timeout": 3, "memory": 128, "reserved": 15}},
        applied_part=lambda state: state["reserved"],
    ),
    HappyPath(
        id="lambda.rollback_alias",
        policy="checkout-rollback",
        alarm="checkout-live-errors",
        target="lambda:function/checkout:live",
        resources=Resources(
            lambda_functions=[FunctionSpec(name="checkout", versions=2, aliases={"live": "2"})]
        ),
        planned={
            "checkout": {
                "timeout": 3,
                "memory": 128,
                "aliases": {"live": {"version": "1", "weights": {}, "timeout": 3, "memory": 128}},
            }
        },
        applied_part=lambda state: state["version"],
    ),
    HappyPath(
        id="waf.block_ips",
        policy="shop-abusers",
        alarm="shop-abusers-api-5xx",
        target="wafv2:ipset/REGIONAL/blocked-ips",
        resources=Resources(
            waf_ip_sets=[IpSetSpec(name="blocked-ips", addresses=["192.0.2.10/32"])]
        ),
        planned={
            "blocked-ips": ["192.0.2.10/32", "198.51.100.20/32", "198.51.100.21/32"],
            "ledger": ["198.51.100.20/32", "198.51.100.21/32"],
        },
        # Offenders counted in the access logs of LOG_GROUP, written once (_write_access_logs).
        applied_part=lambda state: sorted(state["added"]),
    ),
]
# Registered actions without a happy path here yet, and why.
NO_FAULT_PATH_YET = {
    "dynamodb.restore_from_backup": "runs in the restore state machine, not in the remediator",
    "api.diagnose": "changes nothing itself: the action it chooses runs (and is covered here)",
}


def _write_access_logs() -> datetime:
    """The shop API's access log: the OFFENDERS' requests (status 503) over the 30 s before
    the time returned (when the shop's alarm goes to ALARM)."""
    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=LOG_GROUP)
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName="access")
    now = int(clock.now().timestamp() * 1000)
    lines = [
        json.dumps({"ip": address, "status": 503})
        for address, count in OFFENDERS.items()
        for _ in range(count)
    ]
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName="access",
        logEvents=[
            {"timestamp": now - 30_000 + i * 20_000 // len(lines), "message": line}
            for i, line in enumerate(lines)
        ],
    )
    return datetime.fromtimestamp(now / 1000, UTC)


def _event(path: HappyPath, alarm_at: datetime) -> dict[str, Any]:
    """The EventBridge event of the path's alarm going to ALARM at `alarm_at` (a 60 s metric
    period)."""
    event = load_event("single_metric")
    event["id"] = str(uuid.uuid4())
    event["detail"]["alarmName"] = path.alarm
    event["detail"]["state"]["timestamp"] = alarm_at.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
    return event


# --- botocore hooks: record the actions' calls, fail one of them ----------------------------

STEPS = ("plan", "apply", "read_back", "read")


@dataclass(frozen=True)
class Call:
    """One AWS call an action made: `site` is service.Operation#n (its n-th such call in the
    event), `step` the action step that made it."""

    site: str
    step: str


@dataclass(frozen=True)
class Fault:
    """An error as AWS or the network produces it. `status` None: a timeout, no response."""

    kind: str
    code: str | None = None
    status: int | None = None
    # A read timeout happens after the request reached AWS: the call took effect.
    reaches_aws: bool = False


TRANSIENT = ("throttled", "500", "503", "connect-timeout", "read-timeout")
PERMANENT = ("access-denied", "not-found")
# The same on every operation.
_ANY_OPERATION = {
    "500": Fault("500", "InternalFailure", 500),
    "503": Fault("503", "ServiceUnavailable", 503),
    "connect-timeout": Fault("connect-timeout"),
    "read-timeout": Fault("read-timeout", reaches_aws=True),
}
# Modeled errors that say the resource named in the call does not exist.
_NOT_FOUND = ("ResourceNotFoundException", "WAFNonexistentItemException", "ObjectNotFoundException")
_THROTTLING = ("TooManyRequestsException", "ThrottlingException")


def operation_of(site: str) -> str:
    """`service.Operation` of a call site `service.Operation#n`."""
    return site.split("#", 1)[0]


@functools.cache
def _operation(operation: str) -> Any:
    service, name = operation.split(".")
    return botocore.session.get_session().get_service_model(service).operation_model(name)


def _modeled(operation: str, names: tuple[str, ...]) -> tuple[str, int] | None:
    """The first of `names` the operation's model declares as an error, with its status."""
    for shape in _operation(operation).error_shapes:
        if shape.name in names:
            return shape.name, int(shape.metadata.get("error", {}).get("httpStatusCode", 400))
    return None


def fault_for(kind: str, site: str) -> Fault | None:
    """The `kind` of fault as the service of `site` returns it; None: the operation has no
    such error (only `not-found`, on operations without a modeled not-found error)."""
    operation = operation_of(site)
    if kind in _ANY_OPERATION:
        return _ANY_OPERATION[kind]
    if kind == "throttled":
        code, status = _modeled(operation, _THROTTLING) or ("ThrottlingException", 400)
        return Fault(kind, code, status)
    if kind == "access-denied":
        rest_json = _operation(operation).service_model.protocol == "rest-json"
        return Fault(kind, "AccessDeniedException", 403 if rest_json else 400)
    if kind == "not-found":
        modeled = _modeled(operation, _NOT_FOUND)
        return None if modeled is None else Fault(kind, *modeled)
    raise ValueError(f"unknown fault kind {kind!r}")


def _error_response(request: AWSPreparedRequest, model: Any, fault: Fault) -> AWSResponse:
    """The HTTP response AWS sends for `fault`, in the service's protocol."""
    assert fault.code is not None
    assert fault.status is not None
    request_id = str(uuid.uuid4())
    message = f"injected {fault.kind}"
    protocol = model.service_model.protocol
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "json":
        version = model.service_model.metadata.get("jsonVersion", "1.0")
        headers["Content-Type"] = f"application/x-amz-json-{version}"
        prefix = model.service_model.metadata.get("targetPrefix", "aws")
        body = json.dumps(
            {"__type": f"com.amazonaws.{prefix.lower()}#{fault.code}", "message": message}
        )
    elif protocol == "rest-json":
        headers["Content-Type"] = "application/json"
        headers["x-amzn-ErrorType"] = f"{fault.code}:http://internal.amazon.com/coral/"
        kind = "Service" if fault.status >= 500 else "User"
        body = json.dumps({"Type": kind, "message": message})
    elif protocol == "query":
        headers["Content-Type"] = "text/xml"
        kind = "Receiver" if fault.status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{fault.code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
    else:  # a new call in another protocol: teach this function its error format
        raise NotImplementedError(f"error responses in protocol {protocol!r}")
    return AWSResponse(request.url, fault.status, headers, _Raw(body.encode()))


class _Raw:
    """The raw body of an AWSResponse (what urllib3 would hand botocore)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@dataclass
class _Injection:
    site: str  # service.Operation#n; service.Operation: every call of the operation
    faults: tuple[Fault, ...]  # one per attempt, in order; then the attempts go through
    forever: bool  # the last fault stays: every later attempt meets it too


@dataclass
class AwsCalls:
    """botocore hooks on every client: record the calls made inside an action's steps, count
    the attempts and retry delays of the injected call, and fail its attempts."""

    calls: list[Call] = field(default_factory=list)
    attempts: int = 0
    delays: list[float] = field(default_factory=list)
    injection: _Injection | None = None
    _steps: list[str] = field(default_factory=list)
    _seen: Counter[str] = field(default_factory=Counter)
    _model: Any = None
    _injecting: bool = False
    _timeout_after_send: bool = False

    def reset(self) -> None:
        self.calls.clear()
        self._seen.clear()
        self.attempts = 0
        self.delays.clear()
        self.injection = None
        self._injecting = False

    def inject(self, site: str, *faults: Fault, forever: bool = False) -> None:
        """Fail the attempts of `site` (service.Operation#n, or every service.Operation call)
        with `faults`, one each, in order; `forever`: the last one for every later attempt."""
        self.injection = _Injection(site, faults, forever)

    def heal(self) -> None:
        """The fault is gone: nothing fails any more."""
        self.injection = None

    def install(self, events: Any) -> None:
        events.register("before-call", self._before_call, unique_id="faults-before-call")
        events.register_first("before-send", self._before_send, unique_id="faults-send-first")
        events.register_last("before-send", self._after_send, unique_id="faults-send-last")

    def uninstall(self, events: Any) -> None:
        events.unregister("before-call", unique_id="faults-before-call")
        events.unregister("before-send", unique_id="faults-send-first")
        events.unregister("before-send", unique_id="faults-send-last")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._steps.append(name)
        try:
            yield
        finally:
            self._steps.pop()

    def sleep(self, seconds: float) -> None:
        """botocore's retry sleep: recorded, not slept."""
        if self._injecting:
            self.delays.append(seconds)

    def _before_call(self, model: Any, **_: Any) -> None:
        self._model = model
        self._injecting = False
        if not self._steps:  # the core's, the idempotency layer's, the test's own calls
            return
        operation = f"{model.service_model.service_name}.{model.name}"
        self._seen[operation] += 1
        site = f"{operation}#{self._seen[operation]}"
        self.calls.append(Call(site, self._steps[0]))
        if self.injection is not None and self.injection.site in (site, operation):
            self._injecting = True

    def _before_send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        """Runs before moto answers: fail the attempt, or let it through."""
        if not self._injecting or self.injection is None:
            return None
        self.attempts += 1
        faults = self.injection.faults
        if self.attempts <= len(faults):
            fault = faults[self.attempts - 1]
        elif self.injection.forever:
            fault = faults[-1]
        else:
            return None
        if fault.reaches_aws:
            self._timeout_after_send = True  # moto takes the request; the answer is lost
            return None
        if fault.status is None:
            raise ConnectTimeoutError(endpoint_url=request.url)
        response = _error_response(request, self._model, fault)
        # This attempt is answered here: it must not reach moto too (moto serves AWS hosts).
        request.url = "https://fault-injected.invalid/"
        return response

    def _after_send(self, request: AWSPreparedRequest, **_: Any) -> None:
        """Runs after moto answered."""
        if self._timeout_after_send:
            self._timeout_after_send = False
            raise ReadTimeoutError(endpoint_url=request.url)


class _NoSleep:
    """botocore.endpoint's `time`, with the retry sleep recorded instead of slept."""

    def __init__(self, calls: AwsCalls) -> None:
        self.sleep = calls.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextmanager
def traced_steps(calls: AwsCalls, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every registered action's steps tell `calls` that their AWS calls are the action's."""

    def traced(step: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            with calls.step(step):
                return method(self, *args, **kwargs)

        return run

    for action in registered_actions().values():
        for step in STEPS:
            monkeypatch.setattr(action, step, traced(step, getattr(action, step)))
    yield


def _ledger() -> list[str]:
    items = boto3.client("dynamodb").scan(TableName=os.environ["BLOCKS_TABLE_NAME"])["Items"]
    return sorted(item["address"]["S"] for item in items)


# --- discovery, at collection time: each action's calls on a bare moto ----------------------


@functools.cache
def discovered() -> dict[str, tuple[Call, ...]]:
    """The calls each happy path makes, recorded by running its action's steps as the core
    does (plan, apply, read_back) on an empty moto with just its resources."""
    from moto import mock_aws

    from remediators.simulator import fidelity
    from remediators.simulator.local_aws import add_lambda_account_settings

    add_lambda_account_settings()
    policies = load_policy_file(ROOT / "remediation.yaml")
    calls = AwsCalls()
    found: dict[str, tuple[Call, ...]] = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("BLOCKS_TABLE_NAME", "blocks")
        clock.use_simulated_time()
        try:
            with traced_steps(calls, monkeypatch):
                for path in PATHS:
                    # An empty account each (paths may share resource names); mock_aws gives
                    # boto3 a session of its own, so the calls are recorded on that one.
                    with mock_aws():
                        reset_clients()
                        boto3.setup_default_session()
                        session = boto3.DEFAULT_SESSION
                        assert session is not None
                        # As AWS answers (the deployed run has the rules too).
                        fidelity.install(session)
                        create_blocks_table("blocks")
                        alarm_at = _write_access_logs()
                        create_resources(path.resources)
                        calls.install(session.events)
                        calls.reset()
                        try:
                            _run_steps(policies, path, alarm_at)
                        finally:
                            calls.uninstall(session.events)
                        found[path.id] = tuple(calls.calls)
        finally:
            reset_clients()
            clock.use_real_time()
    return found


def _run_steps(policies: Any, path: HappyPath, alarm_at: datetime) -> None:
    from remediators.core.events import AlarmEvent

    policy = policies.policy_named(path.policy)
    assert policy is not None
    assert policy.target is not None
    alarm = AlarmEvent.model_validate(_event(path, alarm_at)).detail
    action = policy.action_class(policy.target, policy.params, alarm)
    plan = action.plan()
    assert plan.skip_reason is None, plan.note
    action.apply(plan)
    action.read_back()


def _cases(kinds: tuple[str, ...]) -> list[Any]:
    cases = []
    for path in PATHS:
        for call in discovered()[path.id]:
            for kind in kinds:
                fault = fault_for(kind, call.site)
                if fault is not None:
                    cases.append(
                        pytest.param(path, call, fault, id=f"{path.id}:{call.site}:{kind}")
                    )
    return cases


# --- the deployed stack, one for the module -------------------------------------------------


@dataclass
class Stack:
    """The deployed stack, the Lambda runtime that runs its remediator function, the hooks on
    every client, and an SQS queue subscribed to the ops topic (the notifications)."""

    deployed: DeployedStack
    runtime: LambdaRuntime
    calls: AwsCalls
    function: str
    function_arn: str
    environment: dict[str, str]
    inbox: str
    alarm_at: datetime  # when the access logs' flood ends
    state_tables: dict[str, list[str]]  # the stack's tables of guardrail state: their keys

    @property
    def audit(self) -> AuditStore:
        return AuditStore(self.environment["AUDIT_TABLE_NAME"])

    def event(self, path: HappyPath) -> dict[str, Any]:
        return _event(path, self.alarm_at)

    def deliver(self, event: dict[str, Any]) -> Invocation:
        """One attempt, as Lambda runs the function (no retry)."""
        return self.runtime.invoke(self.function_arn, event)

    def deliver_async(self, event: dict[str, Any]) -> Invocation:
        """As EventBridge delivers: Lambda's retries, then the dead-letter queue."""
        return self.runtime.invoke_async(self.function_arn, event)

    def notifications(self) -> list[str]:
        """Subjects of the messages sent to the ops topic since the last call."""
        sqs = boto3.client("sqs")
        subjects = []
        while messages := sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                subjects.append(json.loads(message["Body"])["Subject"])
                sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=message["ReceiptHandle"])
        return subjects

    def records(self, target: str) -> list[AuditRecord]:
        """The target's records, once the audit index has caught up with the writes (the
        GSI fidelity rule holds a write back for PROPAGATION of the clock)."""
        clock.advance(PROPAGATION)
        return self.audit.history(clock.now() - timedelta(days=1), target=target)


def _without_approval(policy_asset: Path, destination: Path) -> Path:
    """The deployed policy file with `approval: never` on the paths' policies of risky actions,
    so that an alarm event runs every step of the action (an operator may configure that)."""
    data = json.loads(policy_asset.read_text())
    paths = {path.policy for path in PATHS}
    for policy in data["policies"]:
        if policy["name"] in paths and registered_actions()[policy["action"]].risky:
            policy["approval"] = "never"
    destination.write_text(json.dumps(data))
    return destination


@pytest.fixture(scope="module")
def stack(assembly: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        _reuse_plain_clients(monkeypatch)
        reset_clients()
        local = LocalAws(endpoint_url="in-process")
        deployed = deploy(assembly, local)
        lambda_client = boto3.client("lambda")
        function = deployed.outputs["RemediatorFunctionName"]
        configuration = lambda_client.get_function_configuration(FunctionName=function)
        environment = dict(configuration["Environment"]["Variables"])
        code_dir = next(p for p in assembly.iterdir() if p.name.startswith("asset."))
        environment["POLICY_PATH"] = str(
            _without_approval(
                code_dir / "policy.json", tmp_path_factory.mktemp("policy") / "policy.json"
            )
        )
        lambda_client.update_function_configuration(
            FunctionName=function, Environment={"Variables": environment}
        )
        for key, value in environment.items():  # for the test's own reads (the ledger)
            monkeypatch.setenv(key, value)
        saved_session = boto3.DEFAULT_SESSION
        # It replaces boto3's default session with one that has its hooks (checks of each call
        # against the deployed role's permissions).
        runtime = LambdaRuntime(assets_bucket(local), async_invoke_settings(deployed, local))
        calls = AwsCalls()
        session = boto3.DEFAULT_SESSION
        assert session is not None
        calls.install(session.events)
        monkeypatch.setattr(botocore.endpoint, "time", _NoSleep(calls))
        reset_clients()
        clock.use_simulated_time()  # the actions' polling waits return at once
        inbox = _subscribe(json.loads(environment["NOTIFICATION_TOPICS"])["ops"])
        try:
            with traced_steps(calls, monkeypatch):
                yield Stack(
                    deployed=deployed,
                    runtime=runtime,
                    calls=calls,
                    function=function,
                    function_arn=configuration["FunctionArn"],
                    environment=environment,
                    inbox=inbox,
                    alarm_at=_write_access_logs(),
                    state_tables=_state_tables(environment),
                )
        finally:
            calls.uninstall(session.events)
            runtime.close()
            boto3.DEFAULT_SESSION = saved_session
            reset_clients()
            clock.use_real_time()


def _reuse_plain_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 takes ~8 ms to build a client, and the set-up and read helpers (here and in
    remediators.cli) build one per call: reuse them. Clients with options (the remediator's,
    made with its retry configuration) are built as usual."""
    build = boto3.client
    plain = functools.cache(build)

    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        return build(service, *args, **kwargs) if args or kwargs else plain(service)

    monkeypatch.setattr(boto3, "client", client)


def _subscribe(topic: str) -> str:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="faults-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return str(url)


def _state_tables(environment: dict[str, str]) -> dict[str, list[str]]:
    dynamodb = boto3.client("dynamodb")
    tables = {}
    for variable in (
        "AUDIT_TABLE_NAME",
        "LOCKS_TABLE_NAME",
        "IDEMPOTENCY_TABLE_NAME",
        "BLOCKS_TABLE_NAME",
    ):
        table = environment[variable]
        schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        tables[table] = [key["AttributeName"] for key in schema]
    return tables


def _empty_state_tables(tables: dict[str, list[str]]) -> None:
    dynamodb = boto3.client("dynamodb")
    for table, keys in tables.items():
        for item in dynamodb.scan(TableName=table)["Items"]:
            dynamodb.delete_item(TableName=table, Key={key: item[key] for key in keys})


def _empty_dead_letter_queues(deployed: DeployedStack) -> None:
    sqs = boto3.client("sqs")
    for letter in dead_letters(deployed.name):
        sqs.delete_message(QueueUrl=letter.queue_url, ReceiptHandle=letter.receipt_handle)


def _remove(path: HappyPath) -> None:
    """Delete the path's resources, if a previous test created them."""
    dynamodb = boto3.client("dynamodb")
    autoscaling = boto3.client("application-autoscaling")
    for table in path.resources.dynamodb_tables:
        for target in autoscaling.describe_scalable_targets(
            ServiceNamespace="dynamodb", ResourceIds=[f"table/{table.name}"]
        )["ScalableTargets"]:
            autoscaling.deregister_scalable_target(
                ServiceNamespace="dynamodb",
                ResourceId=target["ResourceId"],
                ScalableDimension=target["ScalableDimension"],
            )
        if table.name in dynamodb.list_tables()["TableNames"]:
            dynamodb.delete_table(TableName=table.name)
    lambda_client = boto3.client("lambda")
    for function in path.resources.lambda_functions:
        if any(
            f["FunctionName"] == function.name for f in lambda_client.list_functions()["Functions"]
        ):
            lambda_client.delete_function(FunctionName=function.name)
            boto3.client("iam").delete_role(RoleName=f"{function.name}-role")
    wafv2 = boto3.client("wafv2")
    for ip_set in path.resources.waf_ip_sets:
        for summary in wafv2.list_ip_sets(Scope=ip_set.scope)["IPSets"]:
            if summary["Name"] == ip_set.name:
                wafv2.delete_ip_set(
                    Name=summary["Name"],
                    Scope=ip_set.scope,
                    Id=summary["Id"],
                    LockToken=summary["LockToken"],
                )


@pytest.fixture
def fresh(stack: Stack) -> Callable[[HappyPath], dict[str, Any]]:
    """Start a test on the stack as deployed, with the path's resources just created:
    returns the resource as it is before any action."""

    def start(path: HappyPath) -> dict[str, Any]:
        # A new execution environment: new clients, with botocore's retry quota full (it is
        # shared by the events a warm environment handles, and failures drain it).
        reset_clients()
        # No update of a previous test's still in progress (the fidelity rules keep the
        # function or table of that name updating for a while of the clock).
        clock.advance(max(IN_PROGRESS_FOR, UPDATING_FOR))
        _empty_state_tables(stack.state_tables)
        _empty_dead_letter_queues(stack.deployed)
        _remove(path)
        create_resources(path.resources)
        stack.notifications()
        stack.calls.reset()
        return path.read()

    return start


# --- the tests ------------------------------------------------------------------------------


def test_the_actions_clients_retry_in_standard_mode_up_to_max_attempts() -> None:
    services = {call.site.split(".")[0] for calls in discovered().values() for call in calls}
    try:
        for service in sorted(services):
            retries = client(service).meta.config.retries
            assert (retries["mode"], retries["total_max_attempts"]) == ("standard", MAX_ATTEMPTS)
    finally:
        reset_clients()


def test_each_action_has_a_path_and_each_path_makes_the_obvious_calls() -> None:
    # Given the calls recorded during each path's clean run
    found = {path_id: [call.site for call in calls] for path_id, calls in discovered().items()}

    # Then every registered action is covered (or listed as not yet), and the obvious calls
    # were seen
    covered = {path_id.split("[")[0] for path_id in found}
    assert set(registered_actions()) - covered <= set(NO_FAULT_PATH_YET)
    expected = {
        "dynamodb.scale_capacity": ["dynamodb.DescribeTable#1", "dynamodb.UpdateTable#1"],
        "dynamodb.scale_capacity[autoscaled]": [
            "application-autoscaling.DescribeScalableTargets#1",
            "application-autoscaling.RegisterScalableTarget#1",
        ],
        "lambda.raise_timeout": [
            "lambda.GetFunctionConfiguration#1",
            "lambda.UpdateFunctionConfiguration#1",
        ],
        "lambda.rollback_alias": [
            "lambda.GetAlias#1",
            "lambda.ListVersionsByFunction#1",
            "lambda.UpdateAlias#1",
        ],
        "waf.block_ips": [
            "wafv2.GetIPSet#1",
            "logs.StartQuery#1",
            "logs.GetQueryResults#1",
            "dynamodb.PutItem#1",
            "wafv2.UpdateIPSet#1",
        ],
    }
    for path_id, sites in expected.items():
        assert set(sites) <= set(found[path_id]), path_id
    # And each path's change is preceded by a read and followed by a read-back
    for path_id, calls in discovered().items():
        steps = [call.step for call in calls]
        assert (steps[0], steps[-1]) == ("plan", "read_back"), path_id
        assert "apply" in steps, path_id


@pytest.mark.parametrize("path", PATHS, ids=[path.id for path in PATHS])
def test_the_deployed_function_makes_the_discovered_calls_and_applies_the_plan(
    stack: Stack, fresh: Callable[[HappyPath], dict[str, Any]], path: HappyPath
) -> None:
    # Given the path's resource as the test creates it
    fresh(path)

    # When the alarm's event is delivered to the deployed function, without a fault
    invocation = stack.deliver(stack.event(path))

    # Then it applies the plan with the very calls discovered on a bare moto
    assert invocation.error is None, invocation.logs
    assert invocation.result["outcome"] == "applied"
    assert stack.calls.calls == list(discovered()[path.id])
    assert path.read() == path.planned
    assert invocation.denied == []  # every call is one the deployed role allows


# The operations whose not-found the actions take as "the target does not exist": the event is
# skipped as `target_not_found` (any other not-found is a failure).
TARGET_MISSING = frozenset(
    {
        "dynamodb.DescribeTable",
        "lambda.GetFunctionConfiguration",
        "lambda.GetAlias",
        "lambda.GetFunctionConcurrency",
        "lambda.PutFunctionConcurrency",
        "wafv2.GetIPSet",
        "wafv2.UpdateIPSet",
        "logs.StartQuery",
    }
)


def _expected(call: Call, fault: Fault) -> str:
    """How an event ends when `call` keeps failing with `fault` (a permanent error)."""
    if call.step == "read_back":
        return "applied"  # the change is made: recorded as applied, with the error
    if fault.kind == "not-found" and operation_of(call.site) in TARGET_MISSING:
        return "target_not_found"
    return "failed"


@pytest.mark.parametrize(("path", "call", "fault"), _cases(TRANSIENT))
def test_a_transient_fault_is_retried_with_backoff_and_the_action_applies_once(
    stack: Stack,
    fresh: Callable[[HappyPath], dict[str, Any]],
    path: HappyPath,
    call: Call,
    fault: Fault,
) -> None:
    # Given the first attempts of one of the action's calls fail with a transient error
    fresh(path)
    stack.calls.inject(call.site, *[fault] * TRANSIENT_FAILURES)

    # When the alarm's event is delivered once
    invocation = stack.deliver(stack.event(path))

    # Then botocore retried that call, with backoff, until it went through
    assert invocation.error is None, invocation.error
    assert stack.calls.attempts == TRANSIENT_FAILURES + 1
    assert len(stack.calls.delays) == TRANSIENT_FAILURES
    assert all(delay > 0 for delay in stack.calls.delays)
    # And the action applied its plan once, recorded once and notified once
    assert invocation.result["outcome"] == "applied"
    assert path.read() == path.planned
    [record] = stack.records(path.target)
    assert (record.outcome, record.error) == (Outcome.APPLIED, None)
    assert record.after is not None
    assert path.applied_part(record.after) == path.applied_part(record.planned or {})
    assert stack.notifications() == [f"[autoremediate] Remediated {path.target}"]


@pytest.mark.parametrize(("path", "call", "fault"), _cases(PERMANENT))
def test_a_permanent_fault_is_not_retried_and_the_event_ends_recorded(
    stack: Stack,
    fresh: Callable[[HappyPath], dict[str, Any]],
    path: HappyPath,
    call: Call,
    fault: Fault,
) -> None:
    # Given one of the action's calls always fails with an error no retry can fix
    before = fresh(path)
    stack.calls.inject(call.site, fault, forever=True)
    assert fault.code is not None

    # When the alarm's event is delivered
    invocation = stack.deliver(stack.event(path))

    # Then botocore did not retry it
    assert (stack.calls.attempts, stack.calls.delays) == (1, [])
    [record] = stack.records(path.target)
    expected = _expected(call, fault)
    if expected == "failed":
        # And the event failed, re-raised for Lambda's retry: recorded, escalated, unchanged
        assert invocation.error is not None
        assert fault.code in invocation.error
        assert (record.outcome, record.escalated) == (Outcome.FAILED, True)
        assert fault.code in (record.error or "")
        assert path.read() == before
        assert stack.notifications() == [f"[autoremediate] ESCALATION: failed on {path.target}"]
    elif expected == "target_not_found":
        # And the event is skipped: the resource is not there to change
        assert invocation.error is None, invocation.error
        assert (record.outcome, record.reason) == (Outcome.SKIPPED, "target_not_found")
        assert "does not exist" in (record.error or "")
        assert path.read() == before
        assert stack.notifications() == []
    else:
        # And the change, made before the read-back failed, is recorded as applied, with why
        # its after-state is missing
        assert invocation.error is None, invocation.error
        assert (record.outcome, record.after) == (Outcome.APPLIED, None)
        assert (record.error or "").startswith("applied, but reading the result back failed")
        assert fault.code in (record.error or "") or "does not exist" in (record.error or "")
        assert path.read() == path.planned
        assert stack.notifications() == [f"[autoremediate] Remediated {path.target}"]


def _changes() -> list[Any]:
    """Per path, each operation that makes its change (called in `apply`, not in `plan`)."""
    cases = []
    for path in PATHS:
        calls = discovered()[path.id]
        read = {operation_of(call.site) for call in calls if call.step == "plan"}
        changes = dict.fromkeys(operation_of(call.site) for call in calls if call.step == "apply")
        for operation in changes:
            if operation not in read:
                cases.append(pytest.param(path, operation, id=f"{path.id}:{operation}"))
    return cases


@pytest.mark.parametrize(("path", "operation"), _changes())
def test_an_event_whose_change_keeps_failing_is_dead_lettered_and_its_replay_applies_once(
    stack: Stack, fresh: Callable[[HappyPath], dict[str, Any]], path: HappyPath, operation: str
) -> None:
    # Given every attempt of the action's change fails (503), for as long as the fault lasts
    before = fresh(path)
    fault = fault_for("503", operation)
    assert fault is not None
    stack.calls.inject(operation, fault, forever=True)
    event = stack.event(path)

    # When EventBridge delivers the alarm's event
    invocation = stack.deliver_async(event)

    # Then each of Lambda's attempts retried the call to botocore's limit, then gave up
    assert invocation.attempts == 3  # the first try and Lambda's two async retries
    assert stack.calls.attempts == 3 * MAX_ATTEMPTS
    # And the event waits in the dead-letter queue with the error, nothing changed
    assert invocation.dead_letter is not None
    letters = dead_letters(stack.deployed.name)
    assert [letter.event for letter in letters] == [event]
    assert "ServiceUnavailable" in letters[0].error
    assert path.read() == before
    [failed] = stack.records(path.target)
    assert (failed.outcome, failed.escalated) == (Outcome.FAILED, True)
    assert stack.notifications() == [f"[autoremediate] ESCALATION: failed on {path.target}"]

    # When the fault is gone and an operator replays the dead letters
    stack.calls.heal()
    replays: list[Invocation] = []
    targets: list[str] = []

    def invoke(function: str, event: dict[str, Any]) -> None:
        targets.append(function)
        replays.append(stack.deliver_async(event))

    replay(letters, handler_functions(stack.deployed.name), invoke=invoke)
    assert targets == [stack.function]  # an alarm event goes back to the remediator

    # Then the event applies, once, and the queue is empty
    [replayed] = replays
    assert replayed.error is None, replayed.error
    assert replayed.result["outcome"] == "applied"
    assert path.read() == path.planned
    [applied] = stack.records(path.target)
    assert (applied.event_id, applied.outcome) == (event["id"], Outcome.APPLIED)
    assert stack.notifications() == [f"[autoremediate] Remediated {path.target}"]
    assert dead_letters(stack.deployed.name) == []


# How AWS answers the retry of a change whose first attempt went through (its answer lost): a
# change in progress. Other changes are idempotent when repeated (UpdateAlias, the scaler's
# bounds, the ledger's conditional PutItem), or moto answers as AWS does (UpdateIPSet: the
# LockToken is stale).
REPEATED_CHANGE = {
    # DynamoDB, while the table is UPDATING
    "dynamodb.UpdateTable": Fault("in-progress", "ResourceInUseException", 400),
    # Lambda, while LastUpdateStatus is InProgress
    "lambda.UpdateFunctionConfiguration": Fault("in-progress", "ResourceConflictException", 409),
}


@pytest.mark.parametrize(("path", "operation"), _changes())
def test_a_change_whose_answer_is_lost_is_made_once(
    stack: Stack, fresh: Callable[[HappyPath], dict[str, Any]], path: HappyPath, operation: str
) -> None:
    # Given the change's first attempt goes through but its answer is lost (a read timeout),
    # and AWS answers the retry as it answers a repeat of that change
    fresh(path)
    lost = fault_for("read-timeout", operation)
    assert lost is not None
    repeated = REPEATED_CHANGE.get(operation)
    stack.calls.inject(f"{operation}#1", lost, *([repeated] if repeated else []))

    # When EventBridge delivers the alarm's event (Lambda retries a failed attempt)
    invocation = stack.deliver_async(stack.event(path))

    # Then the change is made once, recorded as applied by the first attempt, and nothing
    # is escalated
    assert path.read() == path.planned
    assert (invocation.attempts, invocation.error) == (1, None)
    assert invocation.result["outcome"] == "applied"
    [record] = stack.records(path.target)
    assert (record.outcome, record.error) == (Outcome.APPLIED, None)
    assert stack.notifications() == [f"[autoremediate] Remediated {path.target}"]


# Paths whose resource says whether a change was made (an IP set does not: others write it),
# with one call for the change (the autoscaled table's bounds are several).
_LANDED_DETECTABLE = {
    "dynamodb.scale_capacity",
    "lambda.raise_timeout",
    "lambda.raise_concurrency",
    "lambda.rollback_alias",
}


@pytest.mark.parametrize(
    ("path", "operation"),
    [case for case in _changes() if case.values[0].id in _LANDED_DETECTABLE],
)
def test_a_change_that_landed_although_every_attempt_failed_is_not_made_again(
    stack: Stack, fresh: Callable[[HappyPath], dict[str, Any]], path: HappyPath, operation: str
) -> None:
    # Given the change's first attempt goes through, but no attempt's answer comes back, so
    # the event fails and is recorded `failed`
    fresh(path)
    lost = fault_for("read-timeout", operation)
    assert lost is not None
    stack.calls.inject(f"{operation}#1", *[lost] * MAX_ATTEMPTS)

    # When Lambda retries the event
    invocation = stack.deliver_async(stack.event(path))

    # Then the retry finds the change made and records it, instead of making another
    assert (invocation.attempts, invocation.error) == (2, None)
    assert invocation.result["outcome"] == "applied"
    assert path.read() == path.planned
    [record] = stack.records(path.target)
    assert record.outcome is Outcome.APPLIED
    assert record.error is not None
    assert "its change went through: not made again" in record.error
    assert path.applied_part(record.after) == path.applied_part(record.planned or {})
    assert stack.notifications() == [
        f"[autoremediate] ESCALATION: failed on {path.target}",
        f"[autoremediate] Remediated {path.target}",
    ]
