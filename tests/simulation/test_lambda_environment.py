"""A handler runs in-process with its function's environment, and the other threads never see
it come or go: moto's threads (Step Functions' interpreter) read os.environ meanwhile."""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from remediators.core.aws import reset_clients
from remediators.simulator import lambda_runtime
from remediators.simulator.lambda_runtime import LambdaRuntime

ARN = "arn:aws:lambda:us-east-1:123456789012:function:Autoremediate-Endpoint"
DEPLOYED = {"POWERTOOLS_SERVICE_NAME": "autoremediate", "APPROVALS_TABLE_NAME": "approvals"}

HANDLER = """
import os

import env_race_steps as steps


def handler(event, context):
    seen = {key: os.environ.get(key) for key in ("POWERTOOLS_SERVICE_NAME", "AWS_REGION")}
    steps.inside.set()  # the function's environment is applied now
    assert steps.go.wait(10)
    return seen
"""


@pytest.fixture
def deployed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LambdaRuntime, Any]]:
    """A runtime with one deployed function whose handler waits, its environment applied,
    until told to go on."""
    (tmp_path / "env_race_handler.py").write_text(HANDLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    steps = types.ModuleType("env_race_steps")
    steps.inside, steps.go = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "env_race_steps", steps)
    monkeypatch.setattr(lambda_runtime, "_LOADED_FOR", {})
    for key in DEPLOYED:
        monkeypatch.delenv(key, raising=False)
    # The runtime replaces boto3's default session with one that has its hooks.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.DEFAULT_SESSION)
    runtime = LambdaRuntime("unused-bucket", {})
    # A deployed function, as `_load` reads it back (no code to fetch, no role to read).
    runtime._functions[ARN] = lambda_runtime._Function(
        name="Autoremediate-Endpoint",
        arn=ARN,
        handler="env_race_handler.handler",
        environment=DEPLOYED,
        memory=256,
        timeout=30,
        task_root=tmp_path,
        dead_letter_arn=None,
        retries=0,
        access=None,  # type: ignore[arg-type]
    )
    yield runtime, steps
    runtime.close()
    sys.modules.pop("env_race_handler", None)
    reset_clients()


def test_another_thread_iterating_the_environment_outlives_an_invocation(
    deployed: tuple[LambdaRuntime, Any],
) -> None:
    runtime, steps = deployed
    invocations: list[Any] = []
    invoker = threading.Thread(target=lambda: invocations.append(runtime.invoke(ARN, {})))
    invoker.start()
    try:
        assert steps.inside.wait(10)
        # What botocore does for each new client (urllib.request.getproxies_environment),
        # e.g. Step Functions' for a task's Lambda call: iterate os.environ's items. The
        # keys are taken at the first item, and each value read as the iteration gets to it.
        items = iter(os.environ.items())
        first = [next(items)]
    finally:
        steps.go.set()
        invoker.join(10)
    (invocation,) = invocations
    assert invocation.error is None, invocation.logs
    # The invocation is over (its environment gone); the iteration goes on without KeyError.
    read = dict(first + list(items))

    assert not DEPLOYED.keys() & read.keys()  # another thread never saw the function's
    # The handler ran with its function's environment, on top of the process's.
    assert invocation.result == {
        "POWERTOOLS_SERVICE_NAME": "autoremediate",
        "AWS_REGION": os.environ["AWS_REGION"],
    }
    assert not DEPLOYED.keys() & os.environ.keys()
