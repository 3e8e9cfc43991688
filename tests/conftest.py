"""Shared fixtures: fake credentials (never a real AWS call), moto, one synth per session."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Set before boto3 is imported anywhere: tests must pass with no credentials at all.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
)
for _variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_variable, None)
# The CLI's synth cache goes to a folder of this session, not the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="autoremediate-test-cache-")

import remediators.actions  # noqa: E402,F401  (registers the actions)
from remediators.core import clock  # noqa: E402
from remediators.core.aws import reset_clients  # noqa: E402
from remediators.simulator.lambda_runtime import LambdaContext  # noqa: E402,F401  (for the tests)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"


def load_event(name: str) -> dict[str, Any]:
    """A sample EventBridge event from tests/events."""
    return dict(json.loads((EVENTS / f"{name}.json").read_text()))


@pytest.fixture
def aws() -> Iterator[None]:
    """An empty moto account, in-process."""
    import boto3
    from moto import mock_aws

    from remediators.simulator import fidelity
    from remediators.simulator.local_aws import add_lambda_account_settings

    add_lambda_account_settings()  # moto 5.2 lacks Lambda's GetAccountSettings
    with mock_aws():
        # A fresh default session with the simulator's fidelity rules: moto refuses less than
        # AWS does.
        boto3.setup_default_session()
        fidelity.install(boto3.DEFAULT_SESSION)
        reset_clients()
        # Waits (a table UPDATING, a backoff) move simulated time on instead of blocking.
        clock.use_simulated_time()
        yield
    reset_clients()
    clock.use_real_time()


@pytest.fixture(scope="session")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cloud assembly synthesized from remediation.yaml, once per test session."""
    from remediators.simulator.deploy import synthesize

    return synthesize(ROOT / "remediation.yaml", tmp_path_factory.mktemp("synth"))


@pytest.fixture
def deployed(aws: None, assembly: Path) -> Any:
    """The synthesized stack deployed into moto through CloudFormation."""
    from remediators.simulator.deploy import deploy
    from remediators.simulator.local_aws import LocalAws

    return deploy(assembly, LocalAws(endpoint_url="in-process"))


@pytest.fixture
def function_env(deployed: Any, monkeypatch: pytest.MonkeyPatch, assembly: Path) -> dict[str, str]:
    """The deployed remediator's environment variables, set as Lambda would set them."""
    import boto3

    name = deployed.outputs["RemediatorFunctionName"]
    variables: dict[str, str] = boto3.client("lambda").get_function_configuration(
        FunctionName=name
    )["Environment"]["Variables"]
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    code_dir = next(p for p in assembly.iterdir() if p.name.startswith("asset."))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(code_dir))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", name)
    return variables


@pytest.fixture
def inbox(function_env: dict[str, str]) -> Any:
    """An SQS queue subscribed to the ops topic; returns a function reading its messages."""
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = json.loads(function_env["NOTIFICATION_TOPICS"])["ops"]
    boto3.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def read() -> list[dict[str, str]]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return read


def _fresh_handler(module_name: str) -> Any:
    """`module_name`'s lambda_handler in a fresh execution environment for this deployment
    (its module-level set-up reads the deployed table names, as in Lambda)."""
    import importlib

    module = importlib.import_module(module_name)
    module = importlib.reload(module)
    from remediators.handlers import common

    common.recorder.cache_clear()  # built per execution environment
    return module.lambda_handler


@pytest.fixture
def handler(function_env: dict[str, str]) -> Any:
    """The alarm events' lambda_handler (the remediator function's)."""
    return _fresh_handler("remediators.handlers.alarm")


@pytest.fixture
def verification_handler(function_env: dict[str, str]) -> Any:
    """The verification requests' lambda_handler (the verifier function's)."""
    return _fresh_handler("remediators.handlers.verification")


@pytest.fixture
def flow_ended_handler(function_env: dict[str, str]) -> Any:
    """The flows' endings' lambda_handler (the flow-ended function's)."""
    return _fresh_handler("remediators.handlers.flow_ended")


def create_function(name: str = "api-handler", timeout: int = 3, memory: int = 128) -> None:
    """A function in moto, as the simulator creates scenario functions (code never run)."""
    from remediators.simulator.resources import create_function as create
    from remediators.simulator.scenario import FunctionSpec

    create(FunctionSpec(name=name, timeout=timeout, memory=memory))


def create_blocks_table(name: str) -> None:
    """The IP blocks ledger's table, keyed as the stack's (`stacks/constructs/expiry.py`)."""
    import boto3

    boto3.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "ip_set", "KeyType": "HASH"},
            {"AttributeName": "address", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "ip_set", "AttributeType": "S"},
            {"AttributeName": "address", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture
def atomic_dynamodb() -> Iterator[None]:
    """moto's DynamoDB writes atomic, as DynamoDB's conditional writes are (see
    `atomic_dynamodb_writes`): concurrent tests would otherwise race inside moto itself."""
    from remediators.simulator.local_aws import atomic_dynamodb_writes

    with atomic_dynamodb_writes():
        yield
