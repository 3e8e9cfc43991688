"""A local AWS: moto's server on 127.0.0.1 inside this process, with fake credentials.

Every boto3 client made while it runs (ours, and the remediator's in-process) goes to it
through AWS_ENDPOINT_URL. Nothing ever reaches a real AWS account.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from remediators.core.aws import reset_clients

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "LocalAws",
    "add_lambda_account_settings",
    "atomic_dynamodb_writes",
    "in_region",
    "local_aws",
]

# moto's default account; the region is fixed so that ARNs in reports are stable.
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"

_FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "MOTO_ALLOW_NONEXISTENT_REGION": "false",
}
_CLEARED_ENV = ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
# Lambda's GetAccountSettings (GET /2016-08-19/account-settings in botocore's model).
_ACCOUNT_SETTINGS_PATH = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"
# The account's concurrency quota when MOTO_LAMBDA_CONCURRENCY_QUOTA is not set (AWS's default).
_DEFAULT_CONCURRENCY_QUOTA = 1000


@dataclass(frozen=True)
class LocalAws:
    """Where the local AWS listens."""

    endpoint_url: str
    account_id: str = ACCOUNT_ID
    region: str = REGION


@contextmanager
def local_aws() -> Iterator[LocalAws]:
    """Start moto's server on a free port of 127.0.0.1; point boto3 at it until exit."""
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # moto logs and warns about every CloudFormation resource type it skips, on each read of
    # the stack; `deploy` records them once instead.
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
    # Step Functions executions run on moto's interpreter (not just recorded as started).
    saved_config = default_user_config.get("stepfunctions") or {"execute_state_machine": False}
    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    add_lambda_account_settings()
    atomic = atomic_dynamodb_writes()
    atomic.__enter__()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {
        key: os.environ.get(key)
        for key in (*_FAKE_ENV, *_CLEARED_ENV, "AWS_ENDPOINT_URL", "MOTO_PORT")
    }
    # The interpreter calls AWS (Lambda for task states) on localhost:MOTO_PORT.
    os.environ.update(_FAKE_ENV, AWS_ENDPOINT_URL=endpoint, MOTO_PORT=str(port))
    for key in _CLEARED_ENV:
        os.environ.pop(key, None)
    reset_clients()
    try:
        yield LocalAws(endpoint_url=endpoint)
    finally:
        server.stop()
        atomic.__exit__(None, None, None)
        default_user_config["stepfunctions"] = saved_config
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_clients()


_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


@contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """Make moto's DynamoDB writes atomic while this lasts, as DynamoDB applies a conditional
    write to an item atomically: the write succeeds only if the condition holds for the item
    it changes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.SpecifyingConditions.html,
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalUpdate).
    moto evaluates the condition, then writes, holding nothing between the two, and its
    server runs each request on its own thread: two concurrent conditional writes to one
    item could both pass. One lock for every write of the backend (coarser than DynamoDB's
    per item, which only makes writes wait for each other, never both pass). Under the lock a
    transaction keeps a snapshot of the items it names only (`_snapshotting_touched_items`)."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in _WRITES}

    def atomic(original: Any) -> Any:
        @functools.wraps(original)
        def write(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return write

    writes = dict(originals)
    writes["transact_write_items"] = _snapshotting_touched_items(writes["transact_write_items"])
    for name, write in writes.items():
        setattr(DynamoDBBackend, name, atomic(write))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


def _snapshotting_touched_items(transact: Any) -> Any:
    """moto's TransactWriteItems, with the snapshot it keeps for a rollback cut to the items
    the transaction names. moto deep-copies every table a transaction touches, all its items,
    before each transaction (80 ms for a 1.5 MB table here, growing with the table: the audit
    table of a long run); a transaction can only change the items it names, so a copy of those
    items (and of the tables' item maps) restores the same state. Runs under the write lock."""
    from moto.dynamodb import models

    @functools.wraps(transact)
    def write(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        touched: dict[str, list[dict[str, Any]]] = {}
        for item in transact_items:
            op: Any = next(iter(item.values()), {})
            if isinstance(op, dict) and op.get("TableName"):
                key = op.get("Key") or op.get("Item") or {}
                touched.setdefault(op["TableName"], []).append(key)
        namespace = vars(models)
        module_copy, namespace["copy"] = namespace["copy"], _TableSnapshots(touched)
        try:
            return transact(backend, transact_items)
        finally:
            namespace["copy"] = module_copy

    return write


class _TableSnapshots:
    """Stands for the `copy` module inside moto.dynamodb.models while a transaction runs: a
    table is copied as its item maps plus deep copies of the items the transaction names;
    anything else is deep-copied as before."""

    def __init__(self, touched: dict[str, list[dict[str, Any]]]) -> None:
        self.touched = touched

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        import copy

        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table

        if not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        snapshot = copy.copy(value)
        snapshot.items = copy.copy(value.items)
        for key in self.touched.get(value.name, []):
            if value.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[value.hash_key_attr])
            if hash_key not in value.items:
                continue
            if value.range_key_attr is None:
                snapshot.items[hash_key] = copy.deepcopy(value.items[hash_key])
                continue
            ranges = snapshot.items[hash_key] = dict(value.items[hash_key])
            if value.range_key_attr in key:
                range_key = DynamoType(key[value.range_key_attr])
                if range_key in ranges:
                    ranges[range_key] = copy.deepcopy(ranges[range_key])
        return snapshot


@contextmanager
def in_region(aws: LocalAws, region: str) -> Iterator[LocalAws]:
    """The local AWS as seen from `region`: every client made until exit (the simulator's,
    the deployed handlers') defaults to it, as a stack deployed there would."""
    saved = {key: os.environ.get(key) for key in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    os.environ.update(AWS_DEFAULT_REGION=region, AWS_REGION=region)
    reset_clients()
    try:
        yield replace(aws, region=region)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_clients()


def add_lambda_account_settings() -> None:
    """Give moto's Lambda the GetAccountSettings call that moto 5.2 lacks, in-process
    (`mock_aws`) and in server mode alike. AccountLimit.ConcurrentExecutions is
    MOTO_LAMBDA_CONCURRENCY_QUOTA (the quota moto's PutFunctionConcurrency enforces when it is
    set) or AWS's default 1,000; UnreservedConcurrentExecutions is that minus the functions'
    reserved concurrency, counted as PutFunctionConcurrency counts it. Idempotent; call it
    before the first Lambda request (the server builds its routes then)."""
    from moto.awslambda import urls

    urls.url_paths.setdefault(_ACCOUNT_SETTINGS_PATH, _account_settings_response().dispatch)


@cache
def _account_settings_response() -> type[Any]:
    """moto's Lambda responses plus GetAccountSettings (made on first use: moto loads late)."""
    from moto.awslambda.responses import LambdaResponse
    from moto.core.common_types import TYPE_RESPONSE

    class AccountSettingsResponse(LambdaResponse):
        def get_account_settings(self) -> TYPE_RESPONSE:
            quota = int(os.environ.get("MOTO_LAMBDA_CONCURRENCY_QUOTA", _DEFAULT_CONCURRENCY_QUOTA))
            functions = list(self.backend.list_functions())
            reserved = sum(int(f.reserved_concurrency or 0) for f in functions)
            code_size = sum(int(getattr(f, "code_size", 0) or 0) for f in functions)
            settings = {
                "AccountLimit": {
                    "TotalCodeSize": 80_530_636_800,
                    "CodeSizeUnzipped": 262_144_000,
                    "CodeSizeZipped": 52_428_800,
                    "ConcurrentExecutions": quota,
                    "UnreservedConcurrentExecutions": max(0, quota - reserved),
                },
                "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": len(functions)},
            }
            return 200, {}, json.dumps(settings)

    return AccountSettingsResponse
