"""`lambda.raise_timeout`: give a function that times out more time (runbook "Lambda function
timeout"), and optionally more memory (which also brings more CPU).

The timeout is multiplied by `factor`, capped by `max_seconds` and Lambda's 900 s limit, and
never lowered. UpdateFunctionConfiguration is asynchronous (InProgress -> Successful): the
configuration is read back once the update has settled.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError
from pydantic import Field

from remediators.core import clock
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.limits import scale_up
from remediators.core.registry import Action, Params, Permission, Plan, Target, register

__all__ = [
    "LAMBDA_MAX_MEMORY_MB",
    "LAMBDA_MAX_TIMEOUT",
    "FunctionTarget",
    "RaiseTimeout",
    "settled_configuration",
]

LAMBDA_MAX_TIMEOUT = 900
LAMBDA_MAX_MEMORY_MB = 10_240
_SETTLE_POLLS, _SETTLE_POLL_SECONDS = 30, 2.0


class FunctionTarget(Target):
    """A Lambda function by name."""

    function: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")

    @property
    def resource_key(self) -> str:
        return f"lambda:function/{self.function}"


class RaiseTimeoutParams(Params):
    """Timeout times `factor` up to `max_seconds`; memory times `memory_factor` if given."""

    factor: float = Field(default=1.5, gt=1.0, le=10.0)
    max_seconds: int = Field(default=LAMBDA_MAX_TIMEOUT, ge=1, le=LAMBDA_MAX_TIMEOUT)
    memory_factor: float | None = Field(default=None, gt=1.0, le=10.0)
    max_memory_mb: int = Field(default=3008, ge=128, le=LAMBDA_MAX_MEMORY_MB)


@register
class RaiseTimeout(Action[RaiseTimeoutParams, FunctionTarget]):
    """Raise a Lambda function's timeout (and optionally its memory)."""

    name: ClassVar[str] = "lambda.raise_timeout"
    summary: ClassVar[str] = "Raise a timing-out Lambda function's timeout, optionally its memory."
    params_model = RaiseTimeoutParams
    target_model = FunctionTarget
    risky: ClassVar[bool] = False

    @classmethod
    def permissions(cls, target: FunctionTarget | None) -> list[Permission]:
        function = target.function if target else "*"
        return [
            Permission(
                actions=("lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"),
                resources=(f"arn:{{partition}}:lambda:{{region}}:{{account}}:function:{function}",),
                why_wildcard=None
                if target
                else "the policy names no function: it is taken from the alarm's dimensions",
            )
        ]

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> FunctionTarget | None:
        function = alarm.dimension("AWS/Lambda", "FunctionName")
        return FunctionTarget(function=function) if function else None

    def read(self) -> dict[str, Any]:
        return self._read(wait=False)

    def read_back(self) -> dict[str, Any]:
        return self._read(wait=True)

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"timeout": state["timeout"], "memory": state["memory"]}

    def plan(self) -> Plan:
        before = self.read()
        after = dict(before)
        changes = []
        timeout = scale_up(before["timeout"], self.params.factor, self.params.max_seconds)
        if timeout != before["timeout"]:
            after["timeout"] = timeout
            changes.append(f"timeout {before['timeout']} s -> {timeout} s")
        if self.params.memory_factor is not None:
            memory = scale_up(
                before["memory"], self.params.memory_factor, self.params.max_memory_mb
            )
            if memory != before["memory"]:
                after["memory"] = memory
                changes.append(f"memory {before['memory']} MB -> {memory} MB")
        if not changes:
            return Plan(
                before=before,
                after=after,
                skip_reason="at_cap",
                note=f"timeout at its cap ({min(self.params.max_seconds, LAMBDA_MAX_TIMEOUT)} s)"
                + ("" if self.params.memory_factor is None else " and memory at its cap"),
            )
        return Plan(before=before, after=after, changes=changes)

    def apply(self, plan: Plan) -> None:
        self._update(plan.after)

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        self._update(before)

    def _update(self, wanted: dict[str, Any]) -> None:
        try:
            client("lambda").update_function_configuration(
                FunctionName=self.target.function,
                Timeout=wanted["timeout"],
                MemorySize=wanted["memory"],
            )
        except ClientError as error:
            if not self._landed(error, wanted):
                raise ActionError.from_client_error(
                    f"UpdateFunctionConfiguration {self.target.function}", error
                ) from error

    def _landed(self, error: ClientError, wanted: dict[str, Any]) -> bool:
        """Whether an update that botocore retried went through on an earlier attempt whose
        answer was lost, the retry being refused as a conflict with that very update (it is
        InProgress): once settled, the function has the timeout and memory asked for."""
        if not error.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return False
        settled = self._read(wait=True)
        return (settled["timeout"], settled["memory"]) == (wanted["timeout"], wanted["memory"])

    def _read(self, wait: bool) -> dict[str, Any]:
        try:
            configuration = settled_configuration(
                self.target.function, _SETTLE_POLLS if wait else 1
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(f"function {self.target.function} does not exist") from error
            raise
        return {
            "timeout": configuration["Timeout"],
            "memory": configuration["MemorySize"],
            "last_update_status": configuration.get("LastUpdateStatus", "Successful"),
        }


def settled_configuration(function: str, polls: int = _SETTLE_POLLS) -> dict[str, Any]:
    """The function's configuration once no update is in progress (InProgress -> Successful
    or Failed), read at most `polls` times."""
    for _ in range(polls):
        configuration: dict[str, Any] = client("lambda").get_function_configuration(
            FunctionName=function
        )
        if configuration.get("LastUpdateStatus", "Successful") != "InProgress":
            break
        clock.sleep(_SETTLE_POLL_SECONDS)
    return configuration
