"""boto3 clients: created once per process and only when first used (Lambda cold start)."""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = ["client", "reset_clients"]


def client(service: str, region: str | None = None) -> Any:
    """A client for `service` with standard retry mode (backoff on throttling and 5xx), in the
    function's region or `region` (a global service's: WAF for CloudFront is us-east-1's).
    The same service and region give the same client, however the region is passed."""
    return _client(service, region)


@cache
def _client(service: str, region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=region,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )


def reset_clients() -> None:
    """Forget cached clients (tests and the simulator switch endpoints and credentials)."""
    _client.cache_clear()
