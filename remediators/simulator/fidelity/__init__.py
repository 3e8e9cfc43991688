"""Fidelity rules: AWS behaviours the project depends on and moto does not model, enforced on
the clients of this process (the simulator's, and the deployed handlers' in-process), so that a
defect that moto would let through fails here as it would in an account.

One module per rule. Each rule cites the AWS page it follows, hooks botocore where the
simulator already does (`before-call`: answer instead of moto, as AWS would; `after-call`: show
what AWS would return), and answers with the error code and message AWS returns, so botocore
raises the same modeled exception. `install` puts every rule on a session; `remediate simulate`
and the test suite's moto fixture install them by default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.awsrequest import AWSResponse

from remediators.simulator.access import AccessChecker

__all__ = [
    "RULES",
    "Caller",
    "InProgress",
    "Readers",
    "Refusal",
    "Rule",
    "api_params",
    "error_response",
    "install",
]

# The deployed role of the function making the call, if a function makes it (None: the
# simulator's own set-up calls, or a test's).
Caller = Callable[[], AccessChecker | None]


class Rule(Protocol):
    """One AWS behaviour: its name, the page it follows, and how it hooks botocore. A rule
    with `on_by_default = False` is installed only when asked for (`install(also=...)`)."""

    name: str
    doc: str

    def register(self, events: Any, caller: Caller) -> None:
        """Register the rule's handlers on a botocore event emitter."""


@dataclass(frozen=True)
class Refusal:
    """What AWS answers instead: its error code, message and HTTP status."""

    code: str
    message: str
    status: int = 400


class InProgress:
    """What AWS is still doing (a table updating, a function update), by key, each until its
    `until`: what has ended is gone when next looked up. Thread-safe."""

    def __init__(self) -> None:
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def start(self, key: Any, item: Any) -> None:
        """`item` (with an `until`) is in progress for `key`."""
        with self._lock:
            self._items[key] = item

    def get(self, key: Any) -> Any:
        """What is still in progress for `key`, or None."""
        from remediators.core import clock

        with self._lock:
            item = self._items.get(key)
            if item is not None and clock.now() >= item.until:
                del self._items[key]
                return None
            return item

    def end(self, key: Any | None = None) -> None:
        """Nothing is in progress for `key` any more (None: for any key)."""
        with self._lock:
            if key is None:
                self._items.clear()
            else:
                self._items.pop(key, None)


class Readers:
    """Clients of a session without the rules' hooks, by service and region: a rule's own
    reads of what AWS holds are no calls of the caller's (its role, the calls a test counts),
    and meet no rule."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str) -> Any:
        import boto3

        with self._lock:
            if (service, region) not in self._clients:
                self._clients[service, region] = boto3.Session().client(service, region_name=region)
            return self._clients[service, region]


def error_response(refusal: Refusal, url: str = "") -> tuple[AWSResponse, dict[str, Any]]:
    """A before-call answer that makes botocore raise the service's modeled exception for
    `refusal.code`, as if the service had refused the call."""
    parsed = {
        "Error": {"Code": refusal.code, "Message": refusal.message},
        "Message": refusal.message,
        "ResponseMetadata": {"HTTPStatusCode": refusal.status, "HTTPHeaders": {}},
    }
    return AWSResponse(url, refusal.status, {}, None), parsed


def install(session: Any, caller: Caller | None = None, also: tuple[str, ...] = ()) -> list[Rule]:
    """Put the rules on `session` (a boto3 session: clients made from it afterwards obey the
    rules): every rule on by default, and those named in `also`; `caller` tells the calling
    function's role, for rules that depend on it. Rules that keep state (a table being
    updated) start afresh."""
    session.events.register("before-parameter-build", _keep_api_params)
    installed = [
        rule for rule in RULES if getattr(rule, "on_by_default", True) or rule.name in also
    ]
    for rule in installed:
        rule.register(session.events, caller or (lambda: None))
    return installed


def api_params(context: dict[str, Any]) -> dict[str, Any]:
    """The API parameters of the call (before-call and after-call handlers see only the
    serialized request)."""
    return dict(context.get(_API_PARAMS, {}))


_API_PARAMS = "fidelity_api_params"


def _keep_api_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[_API_PARAMS] = dict(params)


def _rules() -> list[Rule]:
    from remediators.simulator.fidelity import (
        autoscaling_checks_cloudwatch,
        cloudwatch_alarm_actions,
        cloudwatch_composite_alarms_need_star,
        dynamodb_capacity_limits,
        dynamodb_gsi_eventually_consistent,
        dynamodb_table_updating,
        lambda_publish_code_sha,
        lambda_update_in_progress,
        lambda_versions_immutable,
        tags_per_resource,
        waf_cloudfront_region,
    )

    return [
        waf_cloudfront_region.RULE,
        autoscaling_checks_cloudwatch.RULE,
        dynamodb_table_updating.RULE,
        cloudwatch_alarm_actions.RULE,
        lambda_update_in_progress.RULE,
        lambda_versions_immutable.RULE,
        lambda_publish_code_sha.RULE,
        dynamodb_capacity_limits.RULE,
        cloudwatch_composite_alarms_need_star.RULE,
        tags_per_resource.RULE,
        dynamodb_gsi_eventually_consistent.RULE,
    ]


RULES: list[Rule] = _rules()
