"""Run a deployed Lambda function's handler in this process, as the Lambda service would.

The function's configuration is read back from the local AWS: its Handler setting names the
entry point and its environment variables are set for the call. Its code is fetched from the
deployed asset, checked against the function's CodeSha256, unpacked as LAMBDA_TASK_ROOT, and
compared file by file with the modules imported here, so what runs is what was deployed.
Async invocation is modelled too: retries, then the function's dead-letter queue. So are the
synchronous invocations of Step Functions task states (moto's interpreter calls Lambda
Invoke; a botocore hook runs the handler here instead) and function-URL requests.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

import remediators
from remediators.core.approval import signing_key
from remediators.core.aws import reset_clients
from remediators.simulator import fidelity
from remediators.simulator.access import AccessChecker, calls_of
from remediators.simulator.deploy import AsyncInvokeSettings

__all__ = ["HttpResponse", "Invocation", "LambdaContext", "LambdaRuntime", "function_url_event"]


@dataclass
class Invocation:
    """The result of one asynchronous invocation, after any retries."""

    function_name: str
    attempts: int
    result: Any = None
    error: str | None = None
    dead_letter: str | None = None  # queue the event went to after the last failed attempt
    logs: list[str] = field(default_factory=list)
    # Calls the function's deployed role would not allow (least privilege, checked).
    denied: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HttpResponse:
    """What a function URL answered."""

    status: int
    body: str
    headers: dict[str, str]


@dataclass
class _Function:
    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    memory: int
    timeout: int
    task_root: Path
    dead_letter_arn: str | None
    retries: int
    access: AccessChecker


class LambdaRuntime:
    """Invokes deployed functions in-process, one execution environment per function."""

    def __init__(self, code_bucket: str, async_settings: dict[str, AsyncInvokeSettings]) -> None:
        self.code_bucket = code_bucket
        self.async_settings = async_settings
        # Per thread: Step Functions runs task states on its own threads.
        self._local = threading.local()
        # One handler at a time (they share sys.stdout and the handler modules).
        self._running = threading.RLock()
        # Before the default session below: its providers keep the os.environ they are given.
        _thread_environ()
        # Step Functions' task invocations, for the report (function name, task, error).
        self.task_invocations: list[Invocation] = []
        # Every client made from now on (the handler's too) reports its calls for checking.
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", self._check_access)
        boto3.DEFAULT_SESSION.events.register("before-call.lambda.Invoke", self._task_invoke)
        # ... and refuses what AWS refuses, moto or not (a function's calls as its role).
        fidelity.install(boto3.DEFAULT_SESSION, caller=self._caller)
        reset_clients()
        self._functions: dict[str, _Function] = {}
        self._workdir = tempfile.TemporaryDirectory(prefix="autoremediate-lambda-")

    def close(self) -> None:
        """Remove the unpacked code."""
        self._workdir.cleanup()

    def invoke_async(self, function_arn: str, event: dict[str, Any]) -> Invocation:
        """Invoke like EventBridge does (asynchronously): retry failures, then dead-letter."""
        function = self._function(function_arn)
        invocation = Invocation(function_name=function.name, attempts=0)
        for _ in range(1 + function.retries):
            invocation.attempts += 1
            self._attempt(function, invocation, event)
            if invocation.error is None:
                return invocation
        if function.dead_letter_arn:
            _send_to_dead_letter_queue(function.dead_letter_arn, event, invocation.error or "")
            invocation.dead_letter = function.dead_letter_arn
        return invocation

    def invoke(self, function_arn: str, event: dict[str, Any]) -> Invocation:
        """Invoke synchronously (RequestResponse): one attempt, the error returned."""
        function = self._function(function_arn)
        invocation = Invocation(function_name=function.name, attempts=1)
        self._attempt(function, invocation, event)
        return invocation

    def request_url(
        self,
        function_name: str,
        method: str,
        url: str,
        form: dict[str, str] | None = None,
        *,
        source_ip: str = "198.51.100.7",
        user_agent: str = "Mozilla/5.0 (simulated operator)",
    ) -> tuple[HttpResponse, Invocation]:
        """An HTTP request to the function's URL, as the event Lambda builds for it (payload
        format 2.0); a form is sent url-encoded, as a browser posts it."""
        event = function_url_event(method, url, form, source_ip=source_ip, user_agent=user_agent)
        invocation = self.invoke(function_name, event)
        if invocation.error is not None:
            return HttpResponse(502, invocation.error, {}), invocation
        result = invocation.result
        response = HttpResponse(
            int(result.get("statusCode", 200)),
            str(result.get("body", "")),
            {key.lower(): str(value) for key, value in (result.get("headers") or {}).items()},
        )
        return response, invocation

    def _attempt(self, function: _Function, invocation: Invocation, event: dict[str, Any]) -> None:
        with self._running:
            try:
                self._local.current = (function, invocation)
                invocation.result = self._run(function, event, invocation.logs)
                invocation.error = None
            except Exception as error:
                invocation.error = f"{type(error).__name__}: {error}"
                invocation.logs.append(traceback.format_exc())
            finally:
                self._local.current = None

    def _task_invoke(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        """botocore hook on Lambda Invoke (only Step Functions' interpreter invokes): run the
        handler here and answer as Lambda would, with FunctionError when it raised."""
        function_arn = unquote(params["url_path"].split("/functions/", 1)[1].split("/", 1)[0])
        invocation = self.invoke(function_arn, json.loads(params["body"] or b"{}"))
        self.task_invocations.append(invocation)
        if invocation.error is None:
            payload = json.dumps(invocation.result).encode()
            extra: dict[str, str] = {}
        else:
            error_type, _sep, message = invocation.error.partition(": ")
            payload = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
            extra = {"FunctionError": "Unhandled"}
        parsed = {
            "StatusCode": 200,
            "Payload": StreamingBody(io.BytesIO(payload), len(payload)),
            "ResponseMetadata": {"HTTPStatusCode": 200},
            **extra,
        }
        return AWSResponse(params["url"], 200, {}, None), parsed

    def _check_access(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """botocore hook (with the call's API parameters): record a call the invoked function
        may not make. It never raises: a checking error must not change the call."""
        current = getattr(self._local, "current", None)
        if current is None:
            return
        function, invocation = current
        region, account = function.arn.split(":")[3:5]
        try:
            calls = calls_of(model.service_model.signing_name, model.name, params, account, region)
            refused = [call for call in calls if not function.access.allowed(call)]
        except Exception as error:  # report, do not interfere
            invocation.denied.append(f"{model.name}: could not check ({error!r})")
            return
        invocation.denied += [str(call) for call in refused]

    def _caller(self) -> AccessChecker | None:
        """The deployed role of the function whose handler runs in this thread, if any."""
        current = getattr(self._local, "current", None)
        return None if current is None else current[0].access

    def access_by_function(self) -> dict[str, AccessChecker]:
        """The role of each function invoked so far, by name: what it grants, what was used."""
        return {function.name: function.access for function in self._functions.values()}

    def _function(self, function_arn: str) -> _Function:
        if function_arn not in self._functions:
            self._functions[function_arn] = self._load(function_arn)
        return self._functions[function_arn]

    def _load(self, function_arn: str) -> _Function:
        lambda_client = boto3.client("lambda")
        configuration = lambda_client.get_function_configuration(FunctionName=function_arn)
        name = configuration["FunctionName"]
        code = self._deployed_code(configuration)
        task_root = Path(self._workdir.name) / name
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            archive.extractall(task_root)
        _check_same_code(task_root)
        settings = self.async_settings.get(name, AsyncInvokeSettings(2, None))
        return _Function(
            name=name,
            arn=configuration["FunctionArn"],
            handler=configuration["Handler"],
            environment=configuration.get("Environment", {}).get("Variables", {}),
            memory=configuration["MemorySize"],
            timeout=configuration["Timeout"],
            task_root=task_root,
            dead_letter_arn=settings.dead_letter_arn,
            retries=settings.retries,
            access=AccessChecker(configuration["Role"]),
        )

    def _deployed_code(self, configuration: dict[str, Any]) -> bytes:
        """The code zip in the assets bucket whose SHA-256 is the function's CodeSha256."""
        s3 = boto3.client("s3")
        wanted = configuration["CodeSha256"]
        for item in s3.list_objects_v2(Bucket=self.code_bucket).get("Contents", []):
            if not item["Key"].endswith(".zip"):
                continue
            body = s3.get_object(Bucket=self.code_bucket, Key=item["Key"])["Body"].read()
            if base64.b64encode(hashlib.sha256(body).digest()).decode() == wanted:
                return bytes(body)
        raise RuntimeError(
            f"no asset in {self.code_bucket} matches the code of {configuration['FunctionName']}"
        )

    def _run(self, function: _Function, event: dict[str, Any], logs: list[str]) -> Any:
        module_name, handler_name = function.handler.rsplit(".", 1)
        context = LambdaContext(function.name, function.arn, function.memory, function.timeout)
        with _function_environment(function), _capture_output(logs):
            module = importlib.import_module(module_name)
            if _LOADED_FOR.get(module_name) != function.arn:
                # A new function gets a fresh execution environment: module-level set-up
                # (clients, table names from the environment) runs again, as on a cold start.
                module = importlib.reload(module)
                _LOADED_FOR[module_name] = function.arn
                # Caches of the shared code that a real cold start would not have either (so
                # each function's own role is checked for what it reads).
                signing_key.cache_clear()
            return getattr(module, handler_name)(json.loads(json.dumps(event)), context)


# Which function's execution environment each handler module was last initialised for.
_LOADED_FOR: dict[str, str] = {}


def function_url_event(
    method: str,
    url: str,
    form: dict[str, str] | None = None,
    *,
    source_ip: str,
    user_agent: str,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The event Lambda builds for an HTTP request to a function URL (payload format 2.0); a
    form is sent url-encoded, as a browser posts it (base64-encoded if `base64_body`)."""
    parts = urlsplit(url)
    body = urlencode(form) if form is not None else None
    if body is not None and base64_body:
        body = base64.b64encode(body.encode()).decode()
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "queryStringParameters": dict(parse_qsl(parts.query)) or None,
        "headers": {
            "host": parts.netloc,
            "user-agent": user_agent,
            **({"content-type": "application/x-www-form-urlencoded"} if form is not None else {}),
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": parts.netloc.split(".", 1)[0],
            "domainName": parts.netloc,
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body,
        "isBase64Encoded": base64_body and body is not None,
    }


class LambdaContext:
    """The context object the Lambda runtime passes to a handler."""

    def __init__(
        self,
        function_name: str = "remediator",
        function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:remediator",
        memory_mb: int = 256,
        timeout_seconds: int = 120,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"simulated/{self.aws_request_id}"
        self._timeout_ms = timeout_seconds * 1000

    def get_remaining_time_in_millis(self) -> int:
        return self._timeout_ms


def _check_same_code(task_root: Path) -> None:
    """Fail if a deployed module differs from the one this process imports."""
    local_root = Path(remediators.__file__).resolve().parent.parent
    for deployed in sorted((task_root / "remediators").rglob("*.py")):
        relative = deployed.relative_to(task_root)
        local = local_root / relative
        if not local.exists() or local.read_bytes() != deployed.read_bytes():
            raise RuntimeError(
                f"deployed {relative} differs from {local}: re-synthesize (clear the cache)"
            )


@contextmanager
def _function_environment(function: _Function) -> Iterator[None]:
    variables = {
        **function.environment,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python_simulated",
        "LAMBDA_TASK_ROOT": str(function.task_root),
    }
    # Only in this thread: os.environ is shared by every thread, and moto's (Step Functions')
    # go on reading it meanwhile; setting and removing the variables there would race them.
    with _thread_environ().applied(variables):
        yield


class _ThreadEnviron(os._Environ[str]):
    """os.environ, except in a thread that runs a handler: there it is the invocation's own
    copy (the process's variables and the function's). So a function's environment is never
    set in, nor removed from, what the other threads read: they iterate os.environ (botocore
    reads the proxy variables for each new client, e.g. Step Functions' for its task's Lambda
    call), and a key removed between the iteration's snapshot and its read raised KeyError.
    Threads a handler starts see the process's variables."""

    def __init__(self, environ: os._Environ[str]) -> None:
        self._local = threading.local()
        data: Any = environ._data  # type: ignore[attr-defined]
        super().__init__(
            data, environ.encodekey, environ.decodekey, environ.encodevalue, environ.decodevalue
        )

    # What os._Environ's methods read and write: this thread's copy, else the process's.
    @property
    def _data(self) -> Any:
        own = getattr(self._local, "data", None)
        return self._process_data if own is None else own

    @_data.setter
    def _data(self, data: Any) -> None:
        self._process_data = data

    @contextmanager
    def applied(self, variables: dict[str, str]) -> Iterator[None]:
        """In this thread only, until exit: the environment with `variables` set."""
        outer = getattr(self._local, "data", None)
        own = dict(self._data)  # copying a dict is atomic: no thread's write is half-seen
        own.update((self.encodekey(k), self.encodevalue(v)) for k, v in variables.items())
        self._local.data = own
        try:
            yield
        finally:
            self._local.data = outer


def _thread_environ() -> _ThreadEnviron:
    """os.environ, made a _ThreadEnviron (once per process)."""
    environ = os.environ
    if not isinstance(environ, _ThreadEnviron):
        environ = _ThreadEnviron(environ)
        os.environ = environ  # noqa: B003  (the same variables; os.getenv reads it too)
    return environ


class _LogSink(io.TextIOBase):
    """Stands in for stdout during invocations; loggers created then keep writing here."""

    def __init__(self) -> None:
        self.lines: list[str] | None = None

    def write(self, text: str) -> int:
        if self.lines is not None:
            self.lines.extend(line for line in text.splitlines() if line.strip())
        return len(text)


_SINK = _LogSink()


@contextmanager
def _capture_output(lines: list[str]) -> Iterator[None]:
    saved = sys.stdout
    sys.stdout = _SINK
    _SINK.lines = lines
    try:
        yield
    finally:
        _SINK.lines = None
        sys.stdout = saved


def _send_to_dead_letter_queue(queue_arn: str, event: dict[str, Any], error: str) -> None:
    """What Lambda sends to a function's DLQ: the event, with the error as attributes."""
    sqs = boto3.client("sqs")
    queue_name = queue_arn.rsplit(":", 1)[1]
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(event),
        MessageAttributes={
            "ErrorCode": {"DataType": "String", "StringValue": "Unhandled"},
            "ErrorMessage": {"DataType": "String", "StringValue": error[:1000] or "error"},
        },
    )
