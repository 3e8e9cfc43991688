"""A local AWS: moto's server on 127.0.0.1 inside this process, with fake credentials.

Every boto3 client made while it runs (ours, and the remediator's in-process) goes to it
through AWS_ENDPOINT_URL. Nothing ever reaches a real AWS account.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from remediators.core.aws import reset_clients

__all__ = ["ACCOUNT_ID", "REGION", "LocalAws", "local_aws"]

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
        default_user_config["stepfunctions"] = saved_config
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_clients()
