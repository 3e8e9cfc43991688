"""boto3 clients: created once per process and only when first used (Lambda cold start)."""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["client", "reset_clients"]


@cache
def client(service: str) -> Any:
    """A client for `service` with standard retry mode (backoff on throttling and 5xx)."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(retries={"mode": "standard", "max_attempts": 5}))


def reset_clients() -> None:
    """Forget cached clients (tests and the simulator switch endpoints and credentials)."""
    client.cache_clear()
