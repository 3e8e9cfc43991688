"""`api.diagnose`: for an API's 5xx or error-rate alarm, find the Lambda functions behind the
API, read what they did over the alarm's window and choose the fix an operator would (runbooks
"API Gateway 5xx errors" and "High error rate"), or none. It changes nothing itself: the action
it chooses runs through the guardrails as if the policy had named it, on its own resource.

Functions: the policy's `target.functions` (`name`, or `name:alias` for one the API invokes
through an alias), else the Lambda integrations of the API named `target.api` (the alarm's
`ApiName`): REST APIs' methods and HTTP APIs' integrations, as each invokes the function (an
alias-qualified ARN invokes that alias).

Figures per function, over the alarm's window (the range CloudWatch evaluated, else its metric
period, at least `min_window`, ending when the alarm changed state), from the metrics of what
the API invokes (`FunctionName`, plus `Resource` = `name:alias` for an alias): Errors,
Throttles and Invocations (Sum), Duration (Maximum); the timeout of the version served; the
reserved concurrency; for an alias, its version, when that was published, and the errors before
and since.

The choice, most telling first (a recent deploy explains the rest: a slower version times out):
1. errors began after the alias moved to a new version -> `lambda.rollback_alias`. The
   version's publish time stands for the move (AWS keeps no time on an alias: an alias moved to
   an old version later looks older than it is); during a canary (the alias splits its traffic)
   the newer of its two versions is the deploy, and the rollback goes to the older one. The
   move is at most `deployed_within` before
   the alarm, with at least `min_errors` errors since and an error rate at least `errors_ratio`
   times that of the `baseline` before (any errors, if there were none before).
2. the longest invocation reached `duration_ratio` of the timeout -> `lambda.raise_timeout`,
   for `$LATEST` or an alias (in a new version the alias moves to, when `$LATEST` is the code it
   serves: that action says when not); a published version the API invokes directly cannot
   change, so for it this is a finding for a person.
3. at least `min_throttles` throttles -> `lambda.raise_concurrency`, only for a function with
   a reservation above 0 (without one its throttles are the account's: a person's call).
Between functions with the same finding, the strongest. A follow-up the policy turns off
(`rollback: null`, ...) is never chosen. Nothing chosen: the event is `inconclusive`,
escalated with the figures.

One module per action (the registry's rule), hence its length: finding the functions, reading
their figures and choosing are this diagnosis alone; the fixes it chooses are their own actions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from botocore.exceptions import ClientError
from pydantic import Field, ValidationInfo, field_validator

from remediators.actions.lambda_raise_timeout import PUBLISHED_BY_US
from remediators.core import clock
from remediators.core.aws import client
from remediators.core.errors import ActionError, TargetNotFound, UnknownAction
from remediators.core.events import AlarmDetail
from remediators.core.policy import Duration
from remediators.core.registry import (
    Action,
    DiagnosingAction,
    Diagnosis,
    Params,
    Permission,
    Target,
    get_action,
    register,
)

__all__ = ["FOLLOW_UPS", "ApiDiagnose", "ApiDiagnoseParams", "ApiTarget"]

# The params field of each action the diagnosis may choose, in the order of the choice.
FOLLOW_UPS = {
    "rollback": "lambda.rollback_alias",
    "raise_timeout": "lambda.raise_timeout",
    "raise_concurrency": "lambda.raise_concurrency",
}
_FUNCTION_ARN = "arn:{partition}:lambda:{region}:{account}:function:"
_APIGATEWAY_ARN = "arn:{partition}:apigateway:{region}::"
_DISCOVERED = "the functions are found from the API's integrations at run time"
# A Lambda function ARN in an integration URI (REST: .../functions/ARN/invocations; HTTP: ARN).
_INTEGRATION = re.compile(
    r"arn:[\w-]+:lambda:[\w-]+:\d{12}:function:([a-zA-Z0-9_-]{1,64})(?::([a-zA-Z0-9$_-]{1,128}))?"
    r"(?:/invocations)?$"
)
_PERIOD = 60  # Lambda's metrics are per minute
_QUERIES_PER_CALL = 500  # GetMetricData's limit
_TIMESTAMP = re.compile(r"^(.*?T[\d:]+)(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$")


class ApiTarget(Target):
    """An API Gateway API by name (REST or HTTP), and optionally the functions behind it
    (`name`, or `name:alias` when the API invokes an alias): then nothing is looked up."""

    api: str = Field(min_length=1, max_length=1024)
    functions: list[str] | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("functions")
    @classmethod
    def _references(cls, value: list[str] | None) -> list[str] | None:
        for reference in value or []:
            if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}(:[a-zA-Z0-9$_-]{1,128})?", reference):
                raise ValueError(f"{reference!r} is not a function name, or name:alias")
        return value

    @property
    def resource_key(self) -> str:
        return f"apigateway:api/{self.api}"


class ApiDiagnoseParams(Params):
    """Thresholds of the diagnosis, and the params of each action it may choose (validated by
    that action's params model; `null` turns the action off)."""

    # Default: the range the alarm evaluated (else its metric period), at least `min_window`.
    window: Duration | None = None
    min_window: Duration = timedelta(minutes=5)
    # The longest invocation at least this share of the timeout: timing out.
    duration_ratio: float = Field(default=0.9, gt=0, le=1)
    min_throttles: int = Field(default=10, ge=1)
    # Errors since the alias moved: at least `min_errors`, at `errors_ratio` times the error
    # rate of the `baseline` before the move, which was at most `deployed_within` ago.
    min_errors: int = Field(default=5, ge=1)
    errors_ratio: float = Field(default=2.0, ge=1)
    deployed_within: Duration = timedelta(hours=2)
    baseline: Duration = timedelta(hours=1)
    rollback: dict[str, Any] | None = Field(default_factory=dict, validate_default=True)
    raise_timeout: dict[str, Any] | None = Field(default_factory=dict, validate_default=True)
    raise_concurrency: dict[str, Any] | None = Field(default_factory=dict, validate_default=True)

    @field_validator("window", "min_window", "deployed_within", "baseline")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("rollback", "raise_timeout", "raise_concurrency")
    @classmethod
    def _follow_up(cls, value: dict[str, Any] | None, info: ValidationInfo) -> Any:
        if value is None:
            return None
        assert info.field_name is not None
        try:
            action = get_action(FOLLOW_UPS[info.field_name])
        except UnknownAction as error:
            raise ValueError(f"{error} (set `{info.field_name}: null` to do without)") from None
        return action.params_model.model_validate(value).model_dump(mode="json")


@dataclass
class _Function:
    """A function as the API invokes it, and what the diagnosis read of it."""

    name: str
    qualifier: str | None = None  # an alias or a version; None: $LATEST
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.qualifier}" if self.qualifier else self.name

    @property
    def alias(self) -> str | None:
        return self.qualifier if self.qualifier and not self.qualifier.isdigit() else None

    @property
    def dimensions(self) -> list[dict[str, str]]:
        dimensions = [{"Name": "FunctionName", "Value": self.name}]
        if self.qualifier:
            dimensions.append({"Name": "Resource", "Value": self.ref})
        return dimensions


@dataclass(order=True)
class _Candidate:
    """A finding that an action can fix: the best one (lowest rank, strongest) is chosen."""

    rank: int
    strength: float
    ref: str
    action: str = field(compare=False)
    target: dict[str, Any] = field(compare=False)
    reason: str = field(compare=False)


@register
class ApiDiagnose(DiagnosingAction[ApiDiagnoseParams, ApiTarget]):
    """Diagnose an API's errors from its functions' metrics; choose the action that fixes it."""

    name: ClassVar[str] = "api.diagnose"
    summary: ClassVar[str] = (
        "Read the Errors, Throttles and Duration of the Lambda functions behind an API over the "
        "alarm's window and choose: raise the timeout, raise the concurrency, roll the alias "
        "back, or escalate with the figures."
    )
    params_model = ApiDiagnoseParams
    target_model = ApiTarget
    risky: ClassVar[bool] = False  # the chosen action's risk decides

    def __init__(
        self, target: ApiTarget, params: ApiDiagnoseParams, alarm: AlarmDetail | None = None
    ) -> None:
        super().__init__(target, params, alarm)
        self._found = False  # whether an API of the target's name exists (set by the look-ups)

    # --- declarations -----------------------------------------------------------------------

    @classmethod
    def permissions(cls, target: ApiTarget | None) -> list[Permission]:
        """What each action it may choose needs on the functions (named, else any), plus the
        reads of the diagnosis those do not grant already (one statement less per read the
        role's policy, which has a size limit, would otherwise repeat)."""
        metrics = Permission(
            actions=("cloudwatch:GetMetricData",),
            resources=("*",),
            why_wildcard="GetMetricData supports no resource-level permissions",
        )
        if target is None or target.functions is None:
            return [metrics, *cls._discovery_permissions()]
        permissions: list[Permission] = []
        reads: list[tuple[str, str]] = []
        for reference in target.functions:
            name, _, qualifier = reference.partition(":")
            function = _FUNCTION_ARN + name
            reads.append(("lambda:GetFunctionConcurrency", function))
            follow_ups = [("lambda.raise_concurrency", {"function": name})]
            if qualifier in ("", "$LATEST"):
                reads.append(("lambda:GetFunctionConfiguration", function))
                follow_ups.append(("lambda.raise_timeout", {"function": name}))
            else:
                reads.append(("lambda:ListVersionsByFunction", function))
            if qualifier and qualifier != "$LATEST" and not qualifier.isdigit():
                reads += [
                    ("lambda:GetAlias", function),
                    ("lambda:GetAlias", f"{function}:{qualifier}"),
                ]
                follow_ups += [
                    ("lambda.rollback_alias", {"function": name, "alias": qualifier}),
                    ("lambda.raise_timeout", {"function": name, "qualifier": qualifier}),
                ]
            for action_name, fields in follow_ups:
                action = _registered(action_name)
                if action is not None:
                    permissions += action.permissions(action.target_model.model_validate(fields))
        return [metrics, *permissions, *_not_granted(reads, permissions, why=None)]

    @classmethod
    def _discovery_permissions(cls) -> list[Permission]:
        """Reading the API's integrations, and any function they may name."""
        permissions = [
            Permission(
                actions=("apigateway:GET",),
                resources=tuple(
                    f"{_APIGATEWAY_ARN}/{kind}{suffix}"
                    for kind in ("restapis", "apis")
                    for suffix in ("", "/*")
                ),
                why_wildcard="the API's id is found by its name; its resources, methods and "
                "integrations are read",
            )
        ]
        for action_name in FOLLOW_UPS.values():
            action = _registered(action_name)
            for permission in action.permissions(None) if action is not None else []:
                # Any function: because they are discovered, not because of the alarm.
                discovered = any(":function:*" in resource for resource in permission.resources)
                why = f"{action_name}: {_DISCOVERED}" if discovered else permission.why_wildcard
                permissions.append(permission.model_copy(update={"why_wildcard": why}))
        any_function = _FUNCTION_ARN + "*"
        reads = [
            (read, any_function)
            for read in (
                "lambda:GetAlias",
                "lambda:GetFunctionConcurrency",
                "lambda:GetFunctionConfiguration",
                "lambda:ListVersionsByFunction",
            )
        ]
        return permissions + _not_granted(reads, permissions, why=_DISCOVERED)

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> ApiTarget | None:
        api = alarm.dimension("AWS/ApiGateway", "ApiName")
        return ApiTarget(api=api) if api else None

    @classmethod
    def choices(cls, params: ApiDiagnoseParams) -> dict[str, Params]:
        chosen: dict[str, Params] = {}
        for field_name, action_name in FOLLOW_UPS.items():
            value = getattr(params, field_name)
            if value is not None:
                chosen[action_name] = get_action(action_name).params_model.model_validate(value)
        return chosen

    # --- diagnosis --------------------------------------------------------------------------

    def diagnose(self) -> Diagnosis:
        functions, notes = self._functions()
        if not functions:
            notes.append(f"API {self.target.api} invokes no Lambda function")
            return Diagnosis(reason="no Lambda function to diagnose", notes=notes)
        start, end = self._window()
        notes.insert(0, f"figures from {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC")
        present = [function for function in functions if self._configuration(function)]
        self._window_figures(present, start, end)
        candidates: list[_Candidate] = []
        for function in present:
            candidates += self._findings(function, end)
        findings = [finding for f in functions for finding in f.figures["findings"]]
        figures = {function.ref: function.figures for function in functions}
        if not candidates:
            summary = "; ".join(findings) or "no errors, throttles or long invocations"
            return Diagnosis(
                reason=f"no cause to fix automatically: {summary}", figures=figures, notes=notes
            )
        best = min(candidates)
        field_name = next(f for f, name in FOLLOW_UPS.items() if name == best.action)
        return Diagnosis(
            action=best.action,
            target=best.target,
            params=getattr(self.params, field_name),
            figures=figures,
            reason=best.reason,
            notes=notes,
        )

    def _findings(self, function: _Function, end: datetime) -> list[_Candidate]:
        """What the figures of one function say, as words in its figures, and the candidates
        among them that an enabled action fixes."""
        findings: list[str] = []
        candidates = [
            candidate
            for candidate in (
                self._rollback(function, end, findings),
                self._timeout(function, findings),
                self._concurrency(function, findings),
            )
            if candidate is not None
        ]
        figures = function.figures
        if not findings:
            longest = figures.get("duration_max_ms")
            findings.append(
                f"{function.ref}: {figures.get('errors', 0)} error(s), "
                f"{figures.get('throttles', 0)} throttle(s), "
                + (
                    "no duration figures"
                    if longest is None
                    else f"longest invocation {longest:.0f} ms of {figures.get('timeout_s')} s"
                )
            )
        figures["findings"] = findings
        return candidates

    def _rollback(
        self, function: _Function, end: datetime, findings: list[str]
    ) -> _Candidate | None:
        finding = self._deploy_finding(function, end)
        if finding is None:
            return None
        figures, ref = function.figures, function.ref
        findings.append(finding)
        if self.params.rollback is None:
            findings.append(f"{ref}: lambda.rollback_alias is off in this policy")
            return None
        if figures.get("previous_version") is None:
            findings.append(f"{ref}: no version before {figures['version']} to go back to")
            return None
        return _Candidate(
            0,
            -figures["errors_after"],
            ref,
            FOLLOW_UPS["rollback"],
            {"function": function.name, "alias": function.alias},
            f"{finding}: roll alias {function.alias} back to version {figures['previous_version']}",
        )

    def _timeout(self, function: _Function, findings: list[str]) -> _Candidate | None:
        figures, ref = function.figures, function.ref
        ratio = figures.get("duration_of_timeout")
        if ratio is None or ratio < self.params.duration_ratio:
            return None
        finding = (
            f"{ref}: the longest invocation took {figures['duration_max_ms']:.0f} ms, "
            f"{ratio:.0%} of its {figures['timeout_s']} s timeout"
        )
        findings.append(finding)
        if function.qualifier not in (None, "$LATEST") and function.alias is None:
            findings.append(
                f"{ref}: the API invokes published version {function.qualifier}, whose timeout "
                "cannot change: raise it in a new version"
            )
            return None
        if self.params.raise_timeout is None:
            findings.append(f"{ref}: lambda.raise_timeout is off in this policy")
            return None
        target: dict[str, Any] = {"function": function.name}
        if function.alias is not None:  # in a new version the alias moves to
            target["qualifier"] = function.alias
        return _Candidate(
            1,
            -ratio,
            ref,
            FOLLOW_UPS["raise_timeout"],
            target,
            f"{finding}: raise the timeout",
        )

    def _concurrency(self, function: _Function, findings: list[str]) -> _Candidate | None:
        figures, ref = function.figures, function.ref
        throttles = figures.get("throttles", 0)
        if throttles < self.params.min_throttles:
            return None
        reserved = figures.get("reserved_concurrency")
        finding = f"{ref}: {throttles} throttled invocation(s)"
        findings.append(finding)
        if reserved is None:
            findings.append(
                f"{ref}: no reserved concurrency, so it throttles on the account's unreserved "
                "pool: a quota increase or a reservation is a person's call"
            )
            return None
        if reserved == 0:
            findings.append(f"{ref}: reserved concurrency 0 (turned off on purpose)")
            return None
        if self.params.raise_concurrency is None:
            findings.append(f"{ref}: lambda.raise_concurrency is off in this policy")
            return None
        return _Candidate(
            2,
            -float(throttles),
            ref,
            FOLLOW_UPS["raise_concurrency"],
            {"function": function.name},
            f"{finding} at reserved concurrency {reserved}: raise it",
        )

    def _deploy_finding(self, function: _Function, end: datetime) -> str | None:
        """For an alias moved to a new version within `deployed_within`: the errors before and
        since, in its figures; the finding in words if errors began with the move."""
        figures = function.figures
        published = figures.get("version_published_at")
        if function.alias is None or published is None:
            return None
        moved = _parse_time(published)
        if moved is None or not timedelta(0) <= end - moved <= self.params.deployed_within:
            return None
        ago = end - moved
        start = moved - self.params.baseline
        series = self._series(
            [
                ("errors", function, "Errors", "Sum"),
                ("invocations", function, "Invocations", "Sum"),
            ],
            start,
            end,
        )
        split: dict[str, int] = {}
        for key, points in series.items():
            metric = key.split("/", 1)[1]
            # A minute that the move falls in counts as after it.
            split[f"{metric}_before"] = _count(
                v for t, v in points if t + timedelta(seconds=_PERIOD) <= moved
            )
            split[f"{metric}_after"] = _count(
                v for t, v in points if t + timedelta(seconds=_PERIOD) > moved
            )
        errors_before, errors_after = split["errors_before"], split["errors_after"]
        invocations_before = split["invocations_before"]
        invocations_after = split["invocations_after"]
        if invocations_before and invocations_after:
            unit = "of invocations"
            before = errors_before / invocations_before
            after = errors_after / invocations_after
        else:  # no traffic figures on a side: errors per minute
            unit = "per minute"
            before = errors_before / max(1.0, (moved - start).total_seconds() / 60)
            after = errors_after / max(1.0, ago.total_seconds() / 60)
        figures |= {
            "minutes_since_version": round(ago.total_seconds() / 60, 1),
            "errors_before": errors_before,
            "invocations_before": invocations_before,
            "errors_after": errors_after,
            "invocations_after": invocations_after,
            f"error_rate_before ({unit})": round(before, 4),
            f"error_rate_after ({unit})": round(after, 4),
        }
        began = errors_after >= self.params.min_errors and (
            errors_before == 0 or after >= self.params.errors_ratio * before
        )
        if not began:
            return None
        rate = (
            f"{before:.2%} -> {after:.2%}"
            if unit == "of invocations"
            else f"{before:.2f} -> {after:.2f} a minute"
        )
        deployed = figures.get("deployed_version", figures["version"])
        return (
            f"{function.ref}: {errors_after} error(s) since version {deployed} "
            f"was published {ago.total_seconds() / 60:.0f} min before the alarm "
            f"(error rate {rate})"
        )

    # --- discovery --------------------------------------------------------------------------

    def _functions(self) -> tuple[list[_Function], list[str]]:
        """The functions the API invokes (the policy's, else its integrations'), and notes
        on integrations left out."""
        if self.target.functions is not None:
            named = [reference.partition(":") for reference in self.target.functions]
            return [_Function(name, qualifier or None) for name, _, qualifier in named], []
        notes: list[str] = []
        uris = self._rest_integrations() + self._http_integrations()
        if not self._found:
            raise TargetNotFound(
                f"API {self.target.api} does not exist (no REST or HTTP API of that name)"
            )
        functions: dict[str, _Function] = {}
        for where, uri in uris:
            match = _INTEGRATION.search(uri)
            if match is None:
                if ":lambda:" in uri or "lambda:path" in uri:
                    notes.append(f"{where}: integration {uri} names no function (left out)")
                continue
            function = _Function(match[1], match[2] or None)
            functions.setdefault(function.ref, function)
        return list(functions.values()), notes

    def _rest_integrations(self) -> list[tuple[str, str]]:
        """(method, integration URI) of every method of the REST APIs of the target's name."""
        apigateway = client("apigateway")
        ids = [
            str(item["id"])
            for page in apigateway.get_paginator("get_rest_apis").paginate()
            for item in page.get("items", [])
            if item.get("name") == self.target.api
        ]
        self._found = self._found or bool(ids)
        uris: list[tuple[str, str]] = []
        for api_id in ids:
            pages = apigateway.get_paginator("get_resources").paginate(
                restApiId=api_id, embed=["methods"]
            )
            for page in pages:
                for resource in page.get("items", []):
                    for method, details in (resource.get("resourceMethods") or {}).items():
                        where = f"{method} {resource.get('path', resource['id'])}"
                        integration = details.get("methodIntegration")
                        if integration is None:
                            integration = self._rest_integration(api_id, resource["id"], method)
                        uri = (integration or {}).get("uri")
                        if uri:
                            uris.append((where, str(uri)))
        return uris

    @staticmethod
    def _rest_integration(api_id: str, resource_id: str, method: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = client("apigateway").get_integration(
                restApiId=api_id, resourceId=resource_id, httpMethod=method
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "NotFoundException":
                return None  # a method without an integration
            raise
        return response

    def _http_integrations(self) -> list[tuple[str, str]]:
        """(integration, URI) of every integration of the HTTP APIs of the target's name."""
        apigateway = client("apigatewayv2")
        ids: list[str] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = apigateway.get_apis(**kwargs)
            ids += [str(a["ApiId"]) for a in page.get("Items", []) if a["Name"] == self.target.api]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        self._found = self._found or bool(ids)
        uris: list[tuple[str, str]] = []
        for api_id in ids:
            kwargs = {"ApiId": api_id}
            while True:
                page = apigateway.get_integrations(**kwargs)
                uris += [
                    (f"integration {item['IntegrationId']}", str(item["IntegrationUri"]))
                    for item in page.get("Items", [])
                    if item.get("IntegrationUri")
                ]
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        return uris

    # --- figures ----------------------------------------------------------------------------

    def _configuration(self, function: _Function) -> bool:
        """Timeout of the version served, reserved concurrency and, for an alias, its version,
        when that was published and the version before; False if the function is missing."""
        lambda_client = client("lambda")
        figures = function.figures
        try:
            concurrency = lambda_client.get_function_concurrency(FunctionName=function.name)
            figures["reserved_concurrency"] = concurrency.get("ReservedConcurrentExecutions")
            if function.qualifier in (None, "$LATEST"):
                configuration = lambda_client.get_function_configuration(FunctionName=function.name)
                figures["timeout_s"] = configuration["Timeout"]
                return True
            version = function.qualifier
            if function.alias is not None:
                alias = lambda_client.get_alias(FunctionName=function.name, Name=function.alias)
                version = str(alias["FunctionVersion"])
                weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")
                if weights:
                    figures["canary_weights"] = dict(weights)
            versions = {
                str(v["Version"]): v
                for page in lambda_client.get_paginator("list_versions_by_function").paginate(
                    FunctionName=function.name
                )
                for v in page["Versions"]
            }
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise ActionError.from_client_error(f"reading {function.ref}", error) from error
            figures["findings"] = [f"{function.ref} does not exist"]
            return False
        served = versions.get(str(version), {})
        figures["version"] = version
        figures["timeout_s"] = served.get("Timeout")
        canary = [v for v in figures.get("canary_weights", {}) if v.isdigit()]
        if version.isdigit() and canary:
            # A split alias: the deploy is the newer of its versions, and a rollback sends
            # all traffic to the older one (lambda.rollback_alias).
            newest, oldest = max([version, *canary], key=int), min([version, *canary], key=int)
            figures["deployed_version"] = newest
            figures["version_published_at"] = versions.get(newest, {}).get("LastModified")
            figures["previous_version"] = oldest
        elif version.isdigit():
            figures["version_published_at"] = served.get("LastModified")
            earlier = [int(v) for v in versions if v.isdigit() and int(v) < int(version)]
            figures["previous_version"] = str(max(earlier)) if earlier else None
        deployed = versions.get(figures.get("deployed_version", version), {})
        if str(deployed.get("Description", "")).startswith(PUBLISHED_BY_US):
            # lambda.raise_timeout's version: the same code with more time, not a deploy.
            figures.pop("version_published_at", None)
            figures["version_by"] = "lambda.raise_timeout (same code, longer timeout): no deploy"
        return True

    def _window_figures(self, functions: list[_Function], start: datetime, end: datetime) -> None:
        """Errors, throttles, invocations and the longest duration of each function."""
        wanted = [
            (metric.lower(), function, metric, stat)
            for function in functions
            for metric, stat in (
                ("Errors", "Sum"),
                ("Throttles", "Sum"),
                ("Invocations", "Sum"),
                ("Duration", "Maximum"),
            )
        ]
        series = self._series(wanted, start, end)
        for function in functions:
            figures = function.figures
            for metric in ("errors", "throttles", "invocations"):
                figures[metric] = _count(v for _, v in series[f"{function.ref}/{metric}"])
            durations = [v for _, v in series[f"{function.ref}/duration"]]
            figures["duration_max_ms"] = round(max(durations), 1) if durations else None
            timeout = figures.get("timeout_s")
            if durations and timeout:
                figures["duration_of_timeout"] = round(max(durations) / (timeout * 1000), 3)

    def _series(
        self, wanted: list[tuple[str, _Function, str, str]], start: datetime, end: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """Per-minute (timestamp, value) of each wanted metric, keyed `ref/key`."""
        queries = [
            {
                "Id": f"m{index}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": metric,
                        "Dimensions": function.dimensions,
                    },
                    "Period": _PERIOD,
                    "Stat": stat,
                },
                "ReturnData": True,
            }
            for index, (_, function, metric, stat) in enumerate(wanted)
        ]
        keys = {f"m{index}": f"{fn.ref}/{key}" for index, (key, fn, _, _) in enumerate(wanted)}
        series: dict[str, list[tuple[datetime, float]]] = {key: [] for key in keys.values()}
        cloudwatch = client("cloudwatch")
        for first in range(0, len(queries), _QUERIES_PER_CALL):
            kwargs: dict[str, Any] = {
                "MetricDataQueries": queries[first : first + _QUERIES_PER_CALL],
                "StartTime": start,
                "EndTime": end,
            }
            while True:
                try:
                    response = cloudwatch.get_metric_data(**kwargs)
                except ClientError as error:
                    raise ActionError.from_client_error("GetMetricData", error) from error
                for result in response["MetricDataResults"]:
                    series[keys[result["Id"]]] += [
                        (_aware(t), float(v))
                        for t, v in zip(result["Timestamps"], result["Values"], strict=True)
                    ]
                if not response.get("NextToken"):
                    break
                kwargs["NextToken"] = response["NextToken"]
        return series

    def _window(self) -> tuple[datetime, datetime]:
        """The alarm's window: what it evaluated (`startDate` of its reason data), else its
        metric period, at least `min_window`; or `window`; ending at its state change."""
        end = _aware(self.alarm.state.timestamp) if self.alarm is not None else clock.now()
        if self.params.window is not None:
            return end - self.params.window, end
        start = end
        if self.alarm is not None:
            evaluated = _evaluated_from(self.alarm.state.reason_data)
            periods = [
                query.metric_stat.period
                for query in self.alarm.configuration.metrics
                if query.metric_stat is not None
            ]
            if evaluated is not None and evaluated < end:
                start = evaluated
            elif periods:
                start = end - timedelta(seconds=max(periods))
        return min(start, end - self.params.min_window), end


def _registered(name: str) -> type[Action[Any, Any]] | None:
    """The follow-up action registered as `name`; None if it is not (a policy could not turn
    it on: loading the policy validates its params with it)."""
    try:
        return get_action(name)
    except UnknownAction:
        return None


def _not_granted(
    reads: list[tuple[str, str]], permissions: list[Permission], why: str | None
) -> list[Permission]:
    """Permissions for the (action, resource) reads that `permissions` do not grant already
    (unconditionally), one per resource."""
    granted = {
        (action, resource)
        for permission in permissions
        if not permission.conditions
        for action in permission.actions
        for resource in permission.resources
    }
    missing: dict[str, list[str]] = {}
    for action, resource in reads:
        if (action, resource) not in granted and action not in missing.get(resource, []):
            missing.setdefault(resource, []).append(action)
    return [
        Permission(actions=tuple(sorted(actions)), resources=(resource,), why_wildcard=why)
        for resource, actions in missing.items()
    ]


def _evaluated_from(reason_data: str | None) -> datetime | None:
    """The start of the range an alarm evaluated, from its reason data (metric alarms)."""
    try:
        data = json.loads(reason_data or "{}")
    except ValueError:
        return None
    start = data.get("startDate") if isinstance(data, dict) else None
    return _parse_time(start) if isinstance(start, str) else None


def _parse_time(text: str) -> datetime | None:
    """A timestamp as Lambda and CloudWatch write them (`...T18:08:16.708762000Z`,
    `...T17:04:40.989+0000`), timezone-aware; None if it is not one."""
    match = _TIMESTAMP.match(text.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    if ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        return datetime.fromisoformat(f"{base}.{(fraction or '0')[:6].ljust(6, '0')}{zone}")
    except ValueError:
        return None


def _count(values: Iterable[float]) -> int:
    """A sum of per-minute counts (CloudWatch returns them as floats)."""
    return round(sum(values))


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
