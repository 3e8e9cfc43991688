"""Run a deployed Lambda function's handler in this process, as the Lambda service would.

The function's configuration is read back from the local AWS: its Handler setting names the
entry point and its environment variables are set for the call. Its code is fetched from the
deployed asset, checked against the function's CodeSha256, unpacked as LAMBDA_TASK_ROOT, and
compared file by file with the modules imported here, so what runs is what was deployed.
Async invocation is modelled too: retries, then the function's dead-letter queue.
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
import traceback
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

import remediators
from remediators.cli.access import AccessChecker, call_of
from remediators.cli.deploy import AsyncInvokeSettings
from remediators.core.aws import reset_clients

__all__ = ["Invocation", "LambdaContext", "LambdaRuntime"]


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
        self._current: tuple[_Function, Invocation] | None = None
        # Every client made from now on (the handler's too) reports its calls for checking.
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", self._check_access)
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
            try:
                self._current = (function, invocation)
                invocation.result = self._run(function, event, invocation.logs)
                invocation.error = None
                return invocation
            except Exception as error:
                invocation.error = f"{type(error).__name__}: {error}"
                invocation.logs.append(traceback.format_exc())
            finally:
                self._current = None
        if function.dead_letter_arn:
            _send_to_dead_letter_queue(function.dead_letter_arn, event, invocation.error or "")
            invocation.dead_letter = function.dead_letter_arn
        return invocation

    def _check_access(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """botocore hook (with the call's API parameters): record a call the invoked function
        may not make. It never raises: a checking error must not change the call."""
        if self._current is None:
            return
        function, invocation = self._current
        region, account = function.arn.split(":")[3:5]
        try:
            call = call_of(model.service_model.signing_name, model.name, params, account, region)
            allowed = function.access.allowed(call)
        except Exception as error:  # report, do not interfere
            invocation.denied.append(f"{model.name}: could not check ({error!r})")
            return
        if not allowed:
            invocation.denied.append(str(call))

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
            return getattr(module, handler_name)(json.loads(json.dumps(event)), context)


# Which function's execution environment each handler module was last initialised for.
_LOADED_FOR: dict[str, str] = {}


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
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
