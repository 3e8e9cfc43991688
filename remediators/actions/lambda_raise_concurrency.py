"""`lambda.raise_concurrency`: give a throttled function more reserved concurrency (runbook
"Lambda Throttles").

A function with reserved concurrency is throttled once that many of its instances run at once.
Its reservation is multiplied by `factor`, capped by the policy's `max_reserved`, and held so
that the account's unreserved pool (the concurrency every function without a reservation
shares) never falls below `min_unreserved`: AWS refuses to go below 100, a policy may keep more
for the other functions. Never lowered.

Through an alias or a version it is the same change: "Concurrency settings apply to the function
as a whole, including all published versions and the unpublished version."
(https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html). An alias's
throttles alarm (`Resource` = `function:alias`) names the function too, and the target is it.

Two functions are left alone, on purpose:

- One without a reservation (`no_reservation`). It already draws on the whole unreserved pool,
  so its throttles mean the account (or burst scaling) is out of concurrency. A reservation
  would not raise its ceiling but set one (at most the pool minus the floor) and take that
  from every other function. The fix is a quota increase or a reservation a person chooses.
- One reserved at 0 (`turned_off`): someone turned it off by throttling every invocation.
  Turning it back on is not a remediation.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError
from pydantic import Field

from remediators.actions.lambda_raise_timeout import FunctionTarget
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.limits import scale_up
from remediators.core.registry import Action, Params, Permission, Plan, register

__all__ = [
    "LAMBDA_MIN_UNRESERVED",
    "RaiseConcurrency",
    "RaiseConcurrencyParams",
]

# AWS keeps at least this much of an account's concurrency unreserved, per region.
LAMBDA_MIN_UNRESERVED = 100
# The most a default account (1,000 concurrent executions) can reserve: 1,000 - 100.
_DEFAULT_MAX_RESERVED = 900


class RaiseConcurrencyParams(Params):
    """Reservation times `factor`, at most `max_reserved`, keeping `min_unreserved` free."""

    factor: float = Field(default=1.5, gt=1.0, le=10.0)
    # No fixed upper bound: what AWS allows is the account's quota minus the unreserved
    # minimum, known only at run time, where `min_unreserved` enforces it.
    max_reserved: int = Field(default=_DEFAULT_MAX_RESERVED, ge=1)
    min_unreserved: int = Field(default=LAMBDA_MIN_UNRESERVED, ge=LAMBDA_MIN_UNRESERVED)


@register
class RaiseConcurrency(Action[RaiseConcurrencyParams, FunctionTarget]):
    """Raise a throttled Lambda function's reserved concurrency."""

    name: ClassVar[str] = "lambda.raise_concurrency"
    summary: ClassVar[str] = (
        "Raise a throttled Lambda function's reserved concurrency, within the policy's maximum "
        "and the account's unreserved floor."
    )
    params_model = RaiseConcurrencyParams
    target_model = FunctionTarget
    risky: ClassVar[bool] = False

    @classmethod
    def permissions(cls, target: FunctionTarget | None) -> list[Permission]:
        function = target.function if target else "*"
        return [
            Permission(
                actions=("lambda:GetFunctionConcurrency", "lambda:PutFunctionConcurrency"),
                resources=(f"arn:{{partition}}:lambda:{{region}}:{{account}}:function:{function}",),
                why_wildcard=None
                if target
                else "the policy names no function: it is taken from the alarm's dimensions",
            ),
            Permission(
                actions=("lambda:GetAccountSettings",),
                resources=("*",),
                why_wildcard="GetAccountSettings reads the account's concurrency limits in the "
                "region and supports no resource-level permissions",
            ),
        ]

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> FunctionTarget | None:
        function = alarm.dimension("AWS/Lambda", "FunctionName")
        return FunctionTarget(function=function) if function else None

    def read(self) -> dict[str, Any]:
        """`reserved` (None: no reservation), and the account's `concurrency_limit` and
        `unreserved` pool in the region."""
        function = self.target.function
        lambda_client = client("lambda")
        try:
            concurrency = lambda_client.get_function_concurrency(FunctionName=function)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(f"function {function} does not exist") from error
            raise ActionError.from_client_error(
                f"GetFunctionConcurrency {function}", error
            ) from error
        try:
            limits = lambda_client.get_account_settings()["AccountLimit"]
        except ClientError as error:
            raise ActionError.from_client_error("GetAccountSettings", error) from error
        return {
            "reserved": concurrency.get("ReservedConcurrentExecutions"),
            "concurrency_limit": limits["ConcurrentExecutions"],
            "unreserved": limits["UnreservedConcurrentExecutions"],
        }

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        # The account's pool moves whenever another function's reservation does: only this
        # function's own reservation says whether it was changed since it was read.
        return {"reserved": state["reserved"]}

    def plan(self) -> Plan:
        before = self.read()
        current, unreserved = before["reserved"], before["unreserved"]
        if current is None:
            return Plan(
                before=before,
                skip_reason="no_reservation",
                note=f"function {self.target.function} has no reserved concurrency: it shares "
                f"the account's unreserved pool ({unreserved} of {before['concurrency_limit']}), "
                "so its throttles are the account's; a reservation would cap it, not raise it",
            )
        if current == 0:
            return Plan(
                before=before,
                skip_reason="turned_off",
                note=f"function {self.target.function} is reserved at 0 concurrency (turned off "
                "on purpose): not turning it back on",
            )
        floor = self.params.min_unreserved
        by_policy = scale_up(current, self.params.factor, self.params.max_reserved)
        new = min(by_policy, current + max(0, unreserved - floor))
        if new == current:
            if by_policy == current:
                note = f"reserved concurrency {current} is at the policy's max_reserved "
                note += f"({self.params.max_reserved})"
            else:
                note = f"reserved concurrency {current} cannot grow: the account's unreserved "
                note += f"concurrency ({unreserved}) is at its floor (min_unreserved {floor})"
            return Plan(before=before, after=dict(before), skip_reason="at_cap", note=note)
        taken = new - current
        after = before | {"reserved": new, "unreserved": unreserved - taken}
        held = f" (not {by_policy}: the account keeps min_unreserved {floor})"
        changes = [
            f"reserved concurrency {current} -> {new}" + (held if new < by_policy else ""),
            f"account unreserved concurrency {unreserved} -> {unreserved - taken}",
        ]
        return Plan(before=before, after=after, changes=changes)

    def apply(self, plan: Plan) -> None:
        self._put(plan.after["reserved"])

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        # Applied changes always start from a reservation (none is `no_reservation`, skipped).
        self._put(before["reserved"])

    def _put(self, reserved: int) -> None:
        function = self.target.function
        try:
            client("lambda").put_function_concurrency(
                FunctionName=function, ReservedConcurrentExecutions=reserved
            )
        except ClientError as error:
            details = error.response["Error"]
            if details["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(f"function {function} does not exist") from error
            if details["Code"] == "InvalidParameterValueException" and (
                "UnreservedConcurrentExecution" in details.get("Message", "")
            ):
                raise ActionError(
                    f"PutFunctionConcurrency {function} {reserved} refused: it would take the "
                    "account's unreserved concurrency below AWS's minimum; other functions "
                    "reserved concurrency since the plan was made (InvalidParameterValueException: "
                    f"{details.get('Message', '')})"
                ) from error
            raise ActionError.from_client_error(
                f"PutFunctionConcurrency {function} {reserved}", error
            ) from error
