"""`lambda.rollback_alias`: point a function's alias back to the version before the one it
serves (runbook "Deploy new Lambda function version", rollback). Risky by default: a policy
must ask for approval or say `approval: never`.

The previous version is the highest published version below the alias's current one. An
alias that splits its traffic (a canary or a gradual deploy in progress: FunctionVersion and
the AdditionalVersionWeights' "second version",
https://docs.aws.amazon.com/lambda/latest/api/API_AliasRoutingConfiguration.html) is rolled
back by sending all traffic to the older of its versions, the one that served before the
deploy, whichever side of the split it is on (CodeDeploy keeps the old version primary; AWS's
CloudFormation example makes the new one primary). Going below it would run older code than
before the deploy.
"""

from __future__ import annotations

from typing import Any, ClassVar

from botocore.exceptions import ClientError
from pydantic import Field

from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.registry import Action, Params, Permission, Plan, Target, register

__all__ = ["AliasTarget", "RollbackAlias"]

_NAME = r"^[a-zA-Z0-9_-]+$"


class AliasTarget(Target):
    """A function's alias, e.g. `live`."""

    function: str = Field(min_length=1, max_length=64, pattern=_NAME)
    alias: str = Field(min_length=1, max_length=128, pattern=_NAME)

    @property
    def resource_key(self) -> str:
        return f"lambda:function/{self.function}:{self.alias}"


class RollbackAliasParams(Params):
    """No settings: the alias goes back one published version."""


@register
class RollbackAlias(Action[RollbackAliasParams, AliasTarget]):
    """Point an alias back to the previous published version."""

    name: ClassVar[str] = "lambda.rollback_alias"
    summary: ClassVar[str] = "Point a Lambda alias back to the version before the current one."
    params_model = RollbackAliasParams
    target_model = AliasTarget
    risky: ClassVar[bool] = True

    @classmethod
    def permissions(cls, target: AliasTarget | None) -> list[Permission]:
        function = target.function if target else "*"
        qualified = f"{function}:{target.alias}" if target else "*"
        why = None if target else "the policy names no alias: it is taken from the alarm"
        arn = "arn:{partition}:lambda:{region}:{account}:function:"
        return [
            Permission(
                actions=("lambda:ListVersionsByFunction",),
                resources=(arn + function,),
                why_wildcard=why,
            ),
            Permission(
                actions=("lambda:GetAlias", "lambda:UpdateAlias"),
                resources=(arn + function, arn + qualified),
                why_wildcard=why,
            ),
        ]

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> AliasTarget | None:
        # Alias metrics carry FunctionName and Resource = "function:alias".
        resource = alarm.dimension("AWS/Lambda", "Resource")
        if resource is None or ":" not in resource:
            return None
        function, alias = resource.split(":", 1)
        return AliasTarget(function=function, alias=alias)

    def read(self) -> dict[str, Any]:
        try:
            alias = client("lambda").get_alias(
                FunctionName=self.target.function, Name=self.target.alias
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(
                    f"alias {self.target.alias} of function {self.target.function} does not exist"
                ) from error
            raise
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        return {"version": alias["FunctionVersion"], "weights": dict(weights)}

    def plan(self) -> Plan:
        before = self.read()
        if before["weights"]:
            served = [before["version"], *before["weights"]]
            oldest = min(served, key=lambda v: int(v) if v.isdigit() else float("inf"))
            split = ", ".join(f"{v} ({w:.0%})" for v, w in sorted(before["weights"].items()))
            return Plan(
                before=before,
                after={"version": oldest, "weights": {}},
                changes=[
                    f"alias {self.target.alias}: split between version {before['version']} and "
                    f"{split} stopped, all traffic to version {oldest}"
                ],
            )
        previous = self._previous_version(before["version"])
        if previous is None:
            return Plan(
                before=before,
                skip_reason="no_previous_version",
                note=f"no published version before {before['version']} to roll back to",
            )
        after = {"version": previous, "weights": {}}
        changes = [f"alias {self.target.alias}: version {before['version']} -> {previous}"]
        return Plan(before=before, after=after, changes=changes)

    def apply(self, plan: Plan) -> None:
        self._point(plan.after)

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        self._point(before)

    def _point(self, state: dict[str, Any]) -> None:
        try:
            client("lambda").update_alias(
                FunctionName=self.target.function,
                Name=self.target.alias,
                FunctionVersion=state["version"],
                RoutingConfig={"AdditionalVersionWeights": state["weights"]},
            )
        except ClientError as error:
            raise ActionError.from_client_error(
                f"UpdateAlias {self.target.function}:{self.target.alias}", error
            ) from error

    def _previous_version(self, current: str) -> str | None:
        if not current.isdigit():  # $LATEST has no "previous"
            return None
        versions = []
        paginator = client("lambda").get_paginator("list_versions_by_function")
        for page in paginator.paginate(FunctionName=self.target.function):
            versions += [int(v["Version"]) for v in page["Versions"] if v["Version"].isdigit()]
        earlier = [v for v in versions if v < int(current)]
        return str(max(earlier)) if earlier else None
