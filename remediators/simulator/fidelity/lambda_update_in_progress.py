"""A Lambda function update is asynchronous: after UpdateFunctionConfiguration or
UpdateFunctionCode the function is `LastUpdateStatus: InProgress` for a while, and another
update (or PublishVersion) meanwhile fails with ResourceConflictException.

AWS: "When you update a function, Lambda provisions an instance of the function and its
supporting resources. If your function connects to a VPC, this process can take a minute.
During this time, you can't modify the function, but you can still invoke it. The
LastUpdateStatus, LastUpdateStatusReason, and LastUpdateStatusReasonCode fields in the response
from GetFunctionConfiguration indicate when the update is complete"
https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html
(and https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html). The refusal is
ResourceConflictException, HTTP 409, "The operation cannot be performed at this time. An update
is in progress for resource: ARN" (the message Lambda writes, as deploy tools report it).
botocore does not retry it (no retry rule names it).

moto applies an update at once and reports `Successful`. AWS gives no figure for how long an
update takes; the rule keeps the function InProgress for IN_PROGRESS_FOR of the project's clock
(simulated time in the simulator: a poll's sleep moves it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from remediators.core import clock
from remediators.simulator.fidelity import Caller, InProgress, Refusal, api_params, error_response

__all__ = ["IN_PROGRESS_FOR", "RULE", "LambdaUpdateInProgress", "function_name"]

IN_PROGRESS_FOR = timedelta(seconds=10)
_UPDATES = ("UpdateFunctionConfiguration", "UpdateFunctionCode")
_REFUSED_WHILE_UPDATING = (*_UPDATES, "PublishVersion")
_READS = ("GetFunctionConfiguration", "GetFunction")


def function_name(reference: str) -> tuple[str, str | None]:
    """The function's name and qualifier in a FunctionName parameter (name, `name:qualifier`,
    partial or full ARN, qualified or not)."""
    tail = reference.split(":function:", 1)[-1]
    name, _, qualifier = tail.partition(":")
    return name, qualifier or None


class LambdaUpdateInProgress:
    name = "lambda-update-is-asynchronous"
    doc = "https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html"

    def register(self, events: Any, caller: Caller) -> None:
        # One Lambda for every session of the process, as AWS is one for all its clients (a
        # deploy's update is seen by the remediator's reads); installing starts it afresh.
        updating = _UPDATING
        updating.end()

        def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
            update = updating.get(_key(context))
            if update is None:
                return None
            refusal = Refusal(
                "ResourceConflictException",
                "The operation cannot be performed at this time. An update is in progress for "
                f"resource: {update.arn}",
                409,
            )
            return error_response(refusal, str(params.get("url", "")))

        def after_update(http_response: Any, parsed: dict[str, Any], context: dict[str, Any],
                         **_: Any) -> None:  # fmt: skip
            if http_response.status_code >= 300 or "FunctionArn" not in parsed:
                return
            update = _Update(clock.now() + IN_PROGRESS_FOR, str(parsed["FunctionArn"]))
            updating.start(_key(context), update)
            parsed["LastUpdateStatus"] = "InProgress"

        def after_read(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            reference = str(api_params(context).get("FunctionName", ""))
            qualifier = api_params(context).get("Qualifier") or function_name(reference)[1]
            if qualifier not in (None, "$LATEST") or updating.get(_key(context)) is None:
                return  # a published version or an alias: its configuration is not updating
            configuration = parsed.get("Configuration", parsed)
            configuration["LastUpdateStatus"] = "InProgress"

        def forget(context: dict[str, Any], **_: Any) -> None:
            updating.end(_key(context))  # a new or deleted function has no update going

        for operation in ("CreateFunction", "DeleteFunction"):
            events.register(f"after-call.lambda.{operation}", forget)
        for operation in _REFUSED_WHILE_UPDATING:
            events.register(f"before-call.lambda.{operation}", before)
        for operation in _UPDATES:
            events.register(f"after-call.lambda.{operation}", after_update)
        for operation in _READS:
            events.register(f"after-call.lambda.{operation}", after_read)


@dataclass(frozen=True)
class _Update:
    """A function being updated: until when, and its ARN."""

    until: datetime
    arn: str


_UPDATING = InProgress()  # _Update by (region, function name)


def _key(context: dict[str, Any]) -> tuple[str, str]:
    name, _ = function_name(str(api_params(context).get("FunctionName", "")))
    return str(context.get("client_region")), name


RULE = LambdaUpdateInProgress()
