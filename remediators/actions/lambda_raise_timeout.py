"""`lambda.raise_timeout`: give a function that times out more time (runbook "Lambda function
timeout"), and optionally more memory (which also brings more CPU).

The timeout is multiplied by `factor`, capped by `max_seconds` and Lambda's 900 s limit, and
never lowered. UpdateFunctionConfiguration is asynchronous (InProgress -> Successful, and
another update meanwhile fails with ResourceConflictException,
https://docs.aws.amazon.com/lambda/latest/api/API_UpdateFunctionConfiguration.html): every
update waits for the one before it to settle, and the configuration is read back once it has.

What times out decides what changes. Only `$LATEST` can be updated: "You can't modify the
configuration of a published version, only the unpublished version" (same page).
- The function itself (the alarm names no alias or version): `$LATEST`'s timeout.
- An alias (the alarm's `Resource` is `function:alias`, as CodeDeploy and canaries invoke it):
  the alias's invocations run the version it serves, so raising `$LATEST` alone would change
  nothing they run. When `$LATEST` is that version's code and configuration but for timeout and
  memory (its CodeSha256, runtime, handler, role, environment, layers, ... are the same),
  `$LATEST` gets the new timeout, a version is published from it (PublishVersion with that
  CodeSha256 as a precondition, https://docs.aws.amazon.com/lambda/latest/api/API_PublishVersion.html)
  and the alias moves to it; revert moves the alias back and restores `$LATEST`'s settings
  (the published version stays: versions are immutable, and deleting one is a person's call).
  When `$LATEST` holds other code or settings, publishing it would deploy them too: skipped
  (`latest_differs`) and escalated. An alias that splits its traffic (a canary or gradual
  deploy in progress) is skipped (`alias_split`): the deploy tool owns it. A SnapStart function
  (`snapstart`): its new version is invocable only once the snapshot is ready, minutes later.
  The alias moves only once the new version is Active, and only if nobody moved it since it was
  read (UpdateAlias's RevisionId).
- A published version (`Resource` is `function:5`): its timeout cannot change, and nothing
  routes to a new version for it: skipped (`published_version`) and escalated.
An alias serving `$LATEST` is `$LATEST`'s case.
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
    "PUBLISHED_BY_US",
    "FunctionTarget",
    "RaiseTimeout",
    "ServedFunctionTarget",
    "settled_configuration",
]

LAMBDA_MAX_TIMEOUT = 900
LAMBDA_MAX_MEMORY_MB = 10_240
_SETTLE_POLLS, _SETTLE_POLL_SECONDS = 30, 2.0
# All of an action's waits for updates to settle together, well within the function's 120 s.
_WAIT_BUDGET_SECONDS = 60.0
_NAME = r"^[a-zA-Z0-9_-]+$"
# What may differ between $LATEST and the version an alias serves when a version published
# from $LATEST is to serve instead: timeout and memory (this change), and what names or dates a
# version rather than configuring it. Anything else that differs (code, runtime and its
# management, role, environment, layers, VPC, fields Lambda adds later) would be deployed with
# it: the action does not publish then.
_NOT_CONFIGURATION = frozenset(
    {
        "Timeout",
        "MemorySize",
        "Version",
        "FunctionArn",
        "MasterArn",
        "LastModified",
        "RevisionId",
        "Description",
        "CodeSize",
        "State",
        "StateReason",
        "StateReasonCode",
        "LastUpdateStatus",
        "LastUpdateStatusReason",
        "LastUpdateStatusReasonCode",
        "ResponseMetadata",
    }
)
# How the versions this action publishes begin their Description (api.diagnose tells them from
# deploys by it).
PUBLISHED_BY_US = "autoremediate:"
_NEW_VERSION_POLLS = 10  # Active within 20 s, or the alias is not moved (a person looks)


class FunctionTarget(Target):
    """A Lambda function by name."""

    function: str = Field(min_length=1, max_length=64, pattern=_NAME)

    @property
    def resource_key(self) -> str:
        return f"lambda:function/{self.function}"


class ServedFunctionTarget(FunctionTarget):
    """A Lambda function, and what its timing-out invocations run: an alias or a published
    version (`qualifier`), else `$LATEST`."""

    qualifier: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[$\w-]+$")

    @property
    def alias(self) -> str | None:
        served = self.qualifier
        return None if served is None or served == "$LATEST" or served.isdigit() else served

    @property
    def resource_key(self) -> str:
        # An alias shares its key with lambda.rollback_alias: one of them moves it at a time.
        alias = self.alias
        return super().resource_key + (f":{alias}" if alias else "")


class RaiseTimeoutParams(Params):
    """Timeout times `factor` up to `max_seconds`; memory times `memory_factor` if given."""

    factor: float = Field(default=1.5, gt=1.0, le=10.0)
    max_seconds: int = Field(default=LAMBDA_MAX_TIMEOUT, ge=1, le=LAMBDA_MAX_TIMEOUT)
    memory_factor: float | None = Field(default=None, gt=1.0, le=10.0)
    max_memory_mb: int = Field(default=3008, ge=128, le=LAMBDA_MAX_MEMORY_MB)


@register
class RaiseTimeout(Action[RaiseTimeoutParams, ServedFunctionTarget]):
    """Raise a Lambda function's timeout (and optionally its memory), where its invocations
    run it."""

    name: ClassVar[str] = "lambda.raise_timeout"
    summary: ClassVar[str] = (
        "Raise a timing-out Lambda function's timeout, optionally its memory; through an "
        "alias, in a new version the alias moves to."
    )
    params_model = RaiseTimeoutParams
    target_model = ServedFunctionTarget
    risky: ClassVar[bool] = False
    _waited = 0.0  # seconds this action has waited for updates to settle (the budget's use)

    @classmethod
    def permissions(cls, target: ServedFunctionTarget | None) -> list[Permission]:
        # A call with a qualifier (Qualifier=5, an alias) is authorized on the qualified ARN.
        arn = "arn:{partition}:lambda:{region}:{account}:function:"
        read, update = "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration"
        if target is None:
            return [
                Permission(
                    actions=(
                        read,
                        update,
                        "lambda:GetAlias",
                        "lambda:UpdateAlias",
                        "lambda:PublishVersion",
                    ),
                    resources=(arn + "*",),
                    why_wildcard="the policy names no function: it is taken from the alarm",
                )
            ]
        function = arn + target.function
        permissions = [Permission(actions=(read, update), resources=(function,))]
        if target.alias is not None:
            permissions += [
                Permission(actions=("lambda:PublishVersion",), resources=(function,)),
                # Lambda authorizes alias calls on the function (and lambda.rollback_alias
                # grants both too): https://docs.aws.amazon.com/lambda/latest/dg/lambda-api-permissions-ref.html
                Permission(
                    actions=("lambda:GetAlias", "lambda:UpdateAlias"),
                    resources=(function, f"{function}:{target.alias}"),
                ),
                Permission(
                    actions=(read,),
                    resources=(f"{function}:*",),
                    why_wildcard="the version the alias serves is known only when it is read",
                ),
            ]
        elif target.qualifier not in (None, "$LATEST"):
            permissions.append(
                Permission(actions=(read,), resources=(f"{function}:{target.qualifier}",))
            )
        return permissions

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> ServedFunctionTarget | None:
        function = alarm.dimension("AWS/Lambda", "FunctionName")
        if not function:
            return None
        # An alias's or a version's metrics carry Resource = "function:qualifier".
        resource = alarm.dimension("AWS/Lambda", "Resource") or ""
        name, _, qualifier = resource.partition(":")
        served = qualifier if name == function and qualifier else None
        return ServedFunctionTarget(function=function, qualifier=served)

    def read(self) -> dict[str, Any]:
        return self._read(wait=False)

    def read_back(self) -> dict[str, Any]:
        return self._read(wait=True)

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        # Through an alias: what it serves (its code, timeout, memory and any canary weights),
        # not which version number holds them; a retry that finds the alias on the version it
        # published agrees.
        keys = (
            ("timeout", "memory", "code", "weights") if "code" in state else ("timeout", "memory")
        )
        return {key: state[key] for key in keys}

    def plan(self) -> Plan:
        before = self.read()
        after = dict(before)
        target = self.target
        if target.qualifier is not None and target.qualifier.isdigit():
            return Plan(
                before=before,
                skip_reason="published_version",
                note=f"the alarm is on version {target.qualifier} of {target.function}, and a "
                "published version's timeout cannot change: raise it in a new version and move "
                "what invokes it there",
            )
        if before.get("weights"):
            split = ", ".join(f"{v} ({w:.0%})" for v, w in sorted(before["weights"].items()))
            return Plan(
                before=before,
                skip_reason="alias_split",
                note=f"alias {target.alias} splits its traffic between version "
                f"{before['version']} and {split}: a deploy is in progress, and its tool owns "
                "the alias",
            )
        differs = before.get("latest_differs")
        if differs:
            return Plan(
                before=before,
                skip_reason="latest_differs",
                note=f"alias {target.alias} serves version {before['version']}, and $LATEST "
                f"differs from it in {', '.join(differs)}: a version published from $LATEST "
                "with the new timeout would deploy that too",
            )
        if before.get("snapstart"):
            return Plan(
                before=before,
                skip_reason="snapstart",
                note=f"{target.function} uses SnapStart on published versions: a new version is "
                "invocable only once its snapshot is ready (minutes), and the alias would fail "
                "meanwhile: publish it and move the alias when it is Active",
            )
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
        if "version" in before:
            changes.append(
                f"published from $LATEST as a new version; alias {target.alias} moves to it "
                f"from version {before['version']}"
            )
        return Plan(before=before, after=after, changes=changes)

    def apply(self, plan: Plan) -> None:
        if "version" not in plan.before:  # $LATEST
            self._update(plan.after)
            return
        # Through an alias: $LATEST must still be what the alias serves, but for the settings
        # this changes, or the version published from it would deploy something else.
        served = self._read(wait=True)
        if (served["version"], served["weights"]) != (plan.before["version"], {}):
            raise ActionError(
                f"alias {self.target.alias} of {self.target.function} moved since the plan "
                f"(version {served['version']}, weights {served['weights']}): a deploy owns it"
            )
        if served.get("latest_differs") or served["code"] != plan.before["code"]:
            raise ActionError(
                f"$LATEST of {self.target.function} changed since the plan "
                f"({', '.join(served.get('latest_differs') or ['its code'])} differ from what "
                f"alias {self.target.alias} serves): not publishing it"
            )
        self._update(plan.after)
        self._settled()
        version = self._publish(plan.before["code"], plan.after)
        self._wait_active(version)
        self._point_alias(version, served["alias_revision"])

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        if "version" in before:
            self._point_alias(before["version"], self._read(wait=True)["alias_revision"])
            self._update({"timeout": before["latest_timeout"], "memory": before["latest_memory"]})
        else:
            self._update(before)

    def _update(self, wanted: dict[str, Any]) -> None:
        """$LATEST's timeout and memory, once any update in progress has settled."""
        function = self.target.function
        current = self._settled()
        if (current["Timeout"], current["MemorySize"]) == (wanted["timeout"], wanted["memory"]):
            return  # already so (a retry after an update whose answer was lost)
        try:
            client("lambda").update_function_configuration(
                FunctionName=function, Timeout=wanted["timeout"], MemorySize=wanted["memory"]
            )
        except ClientError as error:
            if not self._landed(error, wanted):
                raise ActionError.from_client_error(
                    f"UpdateFunctionConfiguration {function}", error
                ) from error

    def _landed(self, error: ClientError, wanted: dict[str, Any]) -> bool:
        """Whether an update that botocore retried went through on an earlier attempt whose
        answer was lost, the retry being refused as a conflict with that very update (it is
        InProgress): once settled, the function has the timeout and memory asked for."""
        if not error.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return False
        settled = self._settled()
        return (settled["Timeout"], settled["MemorySize"]) == (wanted["timeout"], wanted["memory"])

    def _settled(self) -> dict[str, Any]:
        """$LATEST's configuration once its update has settled, waiting at most what is left
        of the action's budget (all its waits together fit the function's timeout)."""
        function = self.target.function
        left = _WAIT_BUDGET_SECONDS - self._waited
        started = clock.now()
        try:
            return settled_configuration(function, max(1, int(left // _SETTLE_POLL_SECONDS) + 1))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(f"function {function} does not exist") from error
            raise ActionError.from_client_error(
                f"GetFunctionConfiguration {function}", error
            ) from error
        finally:
            self._waited += (clock.now() - started).total_seconds()

    def _publish(self, code: str, wanted: dict[str, Any]) -> str:
        """A version of $LATEST (which has `code` and the `wanted` settings): its number.
        Lambda answers with the latest version instead when $LATEST has not changed since
        it (a retry, or a version that already has these settings)."""
        function = self.target.function
        try:
            published = client("lambda").publish_version(
                FunctionName=function,
                CodeSha256=code,
                Description=f"{PUBLISHED_BY_US} timeout {wanted['timeout']} s, memory "
                f"{wanted['memory']} MB for alias {self.target.alias}",
            )
        except ClientError as error:
            raise ActionError.from_client_error(f"PublishVersion {function}", error) from error
        if (published["Timeout"], published["MemorySize"]) != (
            wanted["timeout"],
            wanted["memory"],
        ):
            raise ActionError(
                f"PublishVersion {function} gave version {published['Version']} with timeout "
                f"{published['Timeout']} s: $LATEST changed while it was published"
            )
        return str(published["Version"])

    def _wait_active(self, version: str) -> None:
        """Until the new version is Active: one is Pending for a while after PublishVersion,
        and an alias moved to it meanwhile fails its invocations (botocore's waiter
        PublishedVersionActive polls State for this)."""
        function = self.target.function
        for _ in range(_NEW_VERSION_POLLS):
            try:
                state = client("lambda").get_function_configuration(
                    FunctionName=function, Qualifier=version
                )
            except ClientError as error:
                raise ActionError.from_client_error(
                    f"GetFunctionConfiguration {function}:{version}", error
                ) from error
            if state.get("State", "Active") == "Active":
                return
            if state.get("State") == "Failed":
                raise ActionError(
                    f"version {version} of {function} failed: {state.get('StateReason', '')}"
                )
            clock.sleep(_SETTLE_POLL_SECONDS)
        raise ActionError(
            f"version {version} of {function} is not Active yet: alias {self.target.alias} "
            "not moved"
        )

    def _point_alias(self, version: str, revision: str | None) -> None:
        """Move the alias, only if nobody moved it since it was read (its RevisionId,
        https://docs.aws.amazon.com/lambda/latest/api/API_UpdateAlias.html)."""
        function, alias = self.target.function, self.target.alias
        precondition = {"RevisionId": revision} if revision else {}
        try:
            client("lambda").update_alias(
                FunctionName=function,
                Name=alias,
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": {}},
                **precondition,
            )
        except ClientError as error:
            raise ActionError.from_client_error(f"UpdateAlias {function}:{alias}", error) from error

    def _read(self, wait: bool) -> dict[str, Any]:
        function, qualifier = self.target.function, self.target.qualifier
        try:
            latest = self._settled() if wait else settled_configuration(function, 1)
            if self.target.alias is None and qualifier in (None, "$LATEST"):
                return _settings(latest) | {
                    "last_update_status": latest.get("LastUpdateStatus", "Successful")
                }
            version, weights, revision = str(qualifier), dict[str, float](), None
            if self.target.alias is not None:
                alias = client("lambda").get_alias(FunctionName=function, Name=self.target.alias)
                version, revision = str(alias["FunctionVersion"]), alias.get("RevisionId")
                weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
                if version == "$LATEST" and not weights:  # $LATEST's case
                    return _settings(latest) | {
                        "last_update_status": latest.get("LastUpdateStatus", "Successful")
                    }
            served = client("lambda").get_function_configuration(
                FunctionName=function, Qualifier=version
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(
                    f"function {function}{f':{qualifier}' if qualifier else ''} does not exist"
                ) from error
            raise ActionError.from_client_error(f"reading {function}", error) from error
        differs = _differences(served, latest)
        return _settings(served) | {
            "version": version,
            "weights": dict(weights),
            "alias_revision": revision,
            "snapstart": (latest.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
            "code": served["CodeSha256"],
            "latest_timeout": latest["Timeout"],
            "latest_memory": latest["MemorySize"],
            "latest_differs": differs,
        }


def _differences(served: dict[str, Any], latest: dict[str, Any]) -> list[str]:
    """What a version published from `latest` would configure differently from `served`."""
    differs = []
    for key in sorted((set(served) | set(latest)) - _NOT_CONFIGURATION):
        if _configured(key, served.get(key)) != _configured(key, latest.get(key)):
            differs.append(key)
    return differs


def _configured(key: str, value: Any) -> Any:
    """A field as it configures the function: SnapStart by when it applies (its
    OptimizationStatus differs between $LATEST and versions by design); VPC subnets and groups
    in any order; an environment Lambda could not decrypt as never equal to another."""
    if key == "SnapStart":
        return (value or {}).get("ApplyOn", "None")
    if key == "VpcConfig":
        value = value or {}
        return (
            sorted(value.get("SubnetIds", [])),
            sorted(value.get("SecurityGroupIds", [])),
            bool(value.get("Ipv6AllowedForDualStack")),
        )
    if key == "Environment" and (value or {}).get("Error"):
        return object()
    return value


def _settings(configuration: dict[str, Any]) -> dict[str, Any]:
    return {"timeout": configuration["Timeout"], "memory": configuration["MemorySize"]}


def settled_configuration(function: str, polls: int = _SETTLE_POLLS) -> dict[str, Any]:
    """The function's configuration once no update is in progress (InProgress -> Successful
    or Failed), read at most `polls` times."""
    for poll in range(polls):
        configuration: dict[str, Any] = client("lambda").get_function_configuration(
            FunctionName=function
        )
        if configuration.get("LastUpdateStatus", "Successful") != "InProgress":
            break
        if poll < polls - 1:  # no wait after the last look
            clock.sleep(_SETTLE_POLL_SECONDS)
    return configuration
