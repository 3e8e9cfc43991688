"""Scenario files for `remediate simulate`: resources, alarms, steps and expectations.

See docs/scenarios.md for the format. A bad file raises ScenarioError naming the file and the
field, and the CLI exits with status 2.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from remediators.core.errors import AutoremediateError
from remediators.core.policy import Duration

__all__ = [
    "BUILT_IN_DIR",
    "Scenario",
    "ScenarioError",
    "built_in_scenarios",
    "load_scenario",
]

BUILT_IN_DIR = Path(str(resources.files("remediators.simulator") / "scenarios"))


class ScenarioError(AutoremediateError):
    """A scenario file cannot be read or does not validate; the message names the field."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Spec):
    """Application Auto Scaling bounds of one dimension."""

    min: int = Field(ge=1)
    max: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Bounds:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class IndexSpec(_Spec):
    """A global secondary index (keyed on `key`) with its provisioned capacity."""

    name: str
    key: str
    read: int = Field(default=5, ge=1)
    write: int = Field(default=5, ge=1)


class TableSpec(_Spec):
    """A DynamoDB table to create, keyed on `id` (string)."""

    name: str
    billing: Literal["PROVISIONED", "PAY_PER_REQUEST"] = "PROVISIONED"
    read: int = Field(default=5, ge=1)
    write: int = Field(default=5, ge=1)
    indexes: list[IndexSpec] = Field(default_factory=list)
    # Registers scalable targets for the table's read/write dimensions.
    autoscaling: dict[Literal["read", "write"], Bounds] = Field(default_factory=dict)
    # Items `item-0001`, ... written after creation.
    items: int = Field(default=0, ge=0, le=10_000)
    # An on-demand backup taken once the items are written (`<name>-backup`).
    backup: bool = False
    pitr: bool = False
    ttl: str | None = Field(default=None, description="TTL attribute")
    tags: dict[str, str] = Field(default_factory=dict)


class AliasSpec(_Spec):
    """An alias: the version it serves and, during a canary or a gradual deploy, the share of
    traffic another version gets (`weights: {"6": 0.1}`). A plain string is a version with no
    weights."""

    version: str = Field(pattern=r"^(\$LATEST|[1-9][0-9]*)$")
    weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_other_version(self) -> AliasSpec:
        # https://docs.aws.amazon.com/lambda/latest/api/API_AliasRoutingConfiguration.html:
        # one additional version, weight 0.0-1.0, a published version other than the primary.
        if len(self.weights) > 1:
            raise ValueError("an alias routes to at most one other version")
        for version, weight in self.weights.items():
            if not version.isdigit() or version == self.version:
                raise ValueError(f"weights name a published version other than {self.version}")
            if not 0.0 < weight < 1.0:
                raise ValueError(f"weight {weight} of version {version} is not between 0 and 1")
        return self


def _version_alone(value: Any) -> Any:
    """`live: "5"` is `live: {version: "5"}`."""
    return {"version": value} if isinstance(value, str | int) else value


class FunctionSpec(_Spec):
    """A Lambda function to create (its code is never run). Each of its `versions` is a
    release of new code, published; `$LATEST` keeps the last release's code."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    timeout: int = Field(default=3, ge=1, le=900)
    memory: int = Field(default=128, ge=128, le=10240)
    versions: int = Field(default=0, ge=0, le=20, description="versions to publish")
    aliases: dict[str, Annotated[AliasSpec, BeforeValidator(_version_alone)]] = Field(
        default_factory=dict
    )
    environment: dict[str, str] = Field(default_factory=dict)
    reserved: int | None = Field(default=None, ge=0, description="reserved concurrency")


class IpSetSpec(_Spec):
    """A WAFv2 IP set to create, with the addresses already in it (another writer's)."""

    name: str = Field(pattern=r"^[\w-]{1,128}$")
    scope: Literal["REGIONAL", "CLOUDFRONT"] = "REGIONAL"
    version: Literal["IPV4", "IPV6"] = "IPV4"
    addresses: list[str] = Field(default_factory=list)


class AccessLogSpec(_Spec):
    """An API's access log group with JSON lines written over the last minute: `requests`
    lines per client address, each with `status`."""

    group: str
    requests: dict[str, int] = Field(default_factory=dict)
    status: int = Field(default=503, ge=100, le=599)


class Resources(_Spec):
    """Resources created in the local AWS before the steps."""

    dynamodb_tables: list[TableSpec] = Field(default_factory=list)
    lambda_functions: list[FunctionSpec] = Field(default_factory=list)
    waf_ip_sets: list[IpSetSpec] = Field(default_factory=list)
    access_logs: list[AccessLogSpec] = Field(default_factory=list)
    # SSM String parameters by name (e.g. the table name an application reads).
    ssm_parameters: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> Resources:
        for kind, names in (
            ("table", [table.name for table in self.dynamodb_tables]),
            ("function", [function.name for function in self.lambda_functions]),
        ):
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"{kind} names must be unique; repeated: {', '.join(repeated)}")
        return self


class AlarmSpec(_Spec):
    """A CloudWatch metric alarm to create (it starts in OK)."""

    name: str
    namespace: str
    metric: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    statistic: str = "Sum"
    period: int = 60
    threshold: float = 1.0
    comparison: str = "GreaterThanOrEqualToThreshold"
    evaluation_periods: int = 1
    description: str | None = None


class MetricSpec(_Spec):
    """Datapoints to put, one per minute ending now."""

    namespace: str
    metric: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    values: list[float]


class FireStep(_Spec):
    """Put an alarm into ALARM (through OK first if it is already in ALARM)."""

    fire: str


class EventStep(_Spec):
    """Deliver an EventBridge event from a JSON file, as it is."""

    event: str


class WaitStep(_Spec):
    """Advance the simulated clock."""

    wait: Duration


class OkStep(_Spec):
    """Put an alarm back into OK (its recovery event is delivered)."""

    ok: str


class RedeliverStep(_Spec):
    """Deliver the latest event again, same id (EventBridge delivers at least once)."""

    redeliver: Literal["latest"]


class KillSwitchStep(_Spec):
    """Set the deployed kill-switch parameter, as an operator would."""

    kill_switch: Literal["enabled", "disabled"]


class RevertStep(_Spec):
    """`remediate revert` an applied action: `latest` or an event id."""

    revert: str


class ForceRevertStep(_Spec):
    """`remediate revert --force`: revert even if the resource changed since."""

    force_revert: str


class Fault(_Spec):
    """Make the next `times` calls of `call` (client.Operation) fail with the real error."""

    call: str = Field(pattern=r"^[a-z0-9-]+\.[A-Za-z]+$")
    error: str = "InternalServerError"
    times: int = Field(default=1, ge=1)


class FaultStep(_Spec):
    """Inject a fault into the remediator's AWS calls (the simulator runs it in-process)."""

    inject_fault: Fault


class SweepStep(_Spec):
    """The expiry schedule fires: lapsed changes (expired IP blocks) are undone."""

    sweep: Literal["expired"]


class ReplayStep(_Spec):
    """`remediate dead-letters --replay`: deliver the dead-lettered events again."""

    replay: Literal["dead_letters"]


class HistoryStep(_Spec):
    """Print `remediate history --since DURATION`."""

    history: Duration


class ApproveStep(_Spec):
    """The operator approves the latest pending change: `latest` from the email's link (GET
    the page, POST its form), `cli` with `remediate approvals approve ID`."""

    approve: Literal["latest", "cli"]


class RejectStep(_Spec):
    """As `approve`, with the reject link or `remediate approvals reject ID`."""

    reject: Literal["latest", "cli"]


class PrefetchStep(_Spec):
    """A mail scanner opens (GET) both links of the latest approval email."""

    prefetch_links: Literal["latest"]


class AwaitTimeoutStep(_Spec):
    """Nobody decides: wait (in real time) until the latest approval flow times out."""

    await_approval_timeout: Literal["latest"]


class RestoreStep(_Spec):
    """`remediate restore TABLE`: start the table's restore flow (its policy says from what)."""

    restore: str


ApprovalStep = ApproveStep | RejectStep | PrefetchStep | AwaitTimeoutStep


def _step_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


Step = Annotated[
    Annotated[FireStep, Tag("fire")]
    | Annotated[OkStep, Tag("ok")]
    | Annotated[EventStep, Tag("event")]
    | Annotated[RedeliverStep, Tag("redeliver")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[KillSwitchStep, Tag("kill_switch")]
    | Annotated[RevertStep, Tag("revert")]
    | Annotated[ForceRevertStep, Tag("force_revert")]
    | Annotated[HistoryStep, Tag("history")]
    | Annotated[FaultStep, Tag("inject_fault")]
    | Annotated[ReplayStep, Tag("replay")]
    | Annotated[ApproveStep, Tag("approve")]
    | Annotated[RejectStep, Tag("reject")]
    | Annotated[PrefetchStep, Tag("prefetch_links")]
    | Annotated[AwaitTimeoutStep, Tag("await_approval_timeout")]
    | Annotated[SweepStep, Tag("sweep")]
    | Annotated[RestoreStep, Tag("restore")],
    Discriminator(
        _step_kind,
        custom_error_type="step",
        custom_error_message="a step is one of `fire: ALARM`, `ok: ALARM`, `event: FILE.json`, "
        "`redeliver: latest`, `wait: 2h`, `kill_switch: enabled|disabled`, `revert: latest|ID`, "
        "`force_revert: latest|ID`, `history: 1d`, `inject_fault: {call, error, times}`, "
        "`replay: dead_letters`, `approve: latest`, `reject: latest`, `prefetch_links: latest`, "
        "`await_approval_timeout: latest`, `sweep: expired`, `restore: TABLE`",
    ),
]


class TableExpectation(_Spec):
    """Capacity a table must have at the end (read back from the local AWS)."""

    name: str
    billing: Literal["PROVISIONED", "PAY_PER_REQUEST"] | None = None
    read: int | None = None
    write: int | None = None
    indexes: dict[str, dict[Literal["read", "write"], int]] = Field(default_factory=dict)
    autoscaling: dict[Literal["read", "write"], Bounds] = Field(default_factory=dict)


class AliasExpectation(AliasSpec):
    """The version an alias must serve at the end, its weights, and that version's timeout
    and memory if given."""

    timeout: int | None = None
    memory: int | None = None


class FunctionExpectation(_Spec):
    """Configuration a function must have at the end (read back from the local AWS):
    `timeout` and `memory` are `$LATEST`'s."""

    name: str
    timeout: int | None = None
    memory: int | None = None
    aliases: dict[str, Annotated[AliasExpectation, BeforeValidator(_version_alone)]] = Field(
        default_factory=dict
    )
    reserved: int | None = None


class IpSetExpectation(_Spec):
    """The addresses an IP set must hold at the end (in any order)."""

    name: str
    addresses: list[str]


class RestoredExpectation(_Spec):
    """The restored copies of a table (`<source>-restored-*`) at the end: how many, and what
    the one copy holds."""

    source: str
    copies: int = Field(ge=0)
    items: int | None = None
    pitr: bool | None = None
    ttl: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    autoscaling: dict[Literal["read", "write"], Bounds] = Field(default_factory=dict)


class SettingExpectation(_Spec):
    """An application's table setting at the end (an SSM parameter, or a function's
    environment variable): `value`, or the name of `restored_from`'s restored copy."""

    parameter: str | None = None
    function: str | None = None
    variable: str | None = None
    value: str | None = None
    restored_from: str | None = None

    @model_validator(mode="after")
    def _one_setting_one_value(self) -> SettingExpectation:
        function = self.function is not None and self.variable is not None
        if (self.parameter is not None) == function or (self.function is None) != (
            self.variable is None
        ):
            raise ValueError("name either `parameter` or `function` and `variable`")
        if (self.value is None) == (self.restored_from is None):
            raise ValueError("give exactly one of `value` or `restored_from`")
        return self

    @property
    def label(self) -> str:
        if self.parameter is not None:
            return f"SSM parameter {self.parameter}"
        return f"variable {self.variable} of function {self.function}"


class ResourceExpectations(_Spec):
    """Resource states expected at the end."""

    dynamodb_tables: list[TableExpectation] = Field(default_factory=list)
    lambda_functions: list[FunctionExpectation] = Field(default_factory=list)
    waf_ip_sets: list[IpSetExpectation] = Field(default_factory=list)
    restored_tables: list[RestoredExpectation] = Field(default_factory=list)
    table_settings: list[SettingExpectation] = Field(default_factory=list)


OutcomeName = Literal["unmatched", "invalid", "applied", "skipped", "pending", "failed"]


class Expectations(_Spec):
    """What must hold at the end; `outcomes` lists one outcome per delivered event."""

    outcomes: list[OutcomeName | Annotated[str, Field(pattern=r"^skipped:[a-z_]+$")]] | None = None
    resources: ResourceExpectations = Field(default_factory=ResourceExpectations)


class Scenario(_Spec):
    """One scenario: a policy file, resources, alarms, steps and expectations."""

    name: str
    description: str = ""
    # Where the stack and the scenario's resources live (a WAF IP set for CloudFront lives at
    # us-east-1 whatever the region, as in AWS).
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    policy: str | None = None
    defaults: dict[str, Any] | None = None
    notifications: dict[str, Any] | None = None
    policies: list[Any] | None = None
    resources: Resources = Field(default_factory=Resources)
    alarms: list[AlarmSpec] = Field(default_factory=list)
    metrics: list[MetricSpec] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)
    expect: Expectations = Field(default_factory=Expectations)
    # Where relative paths (policy, event files) are resolved from.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _one_policy_source(self) -> Scenario:
        if (self.policy is None) == (self.policies is None):
            raise ValueError("give exactly one of `policy` (a file) or `policies` (inline)")
        if self.policy is not None and (self.defaults or self.notifications):
            raise ValueError("`defaults` and `notifications` go with inline `policies`")
        return self

    def policy_data(self) -> dict[str, Any] | None:
        """The inline policy file, if the scenario has one."""
        if self.policies is None:
            return None
        data: dict[str, Any] = {"policies": self.policies}
        if self.defaults is not None:
            data["defaults"] = self.defaults
        if self.notifications is not None:
            data["notifications"] = self.notifications
        return data


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read scenario: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ScenarioError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping (name, steps, ...)")
    try:
        return Scenario.model_validate({**data, "base_dir": path.parent})
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        ]
        raise ScenarioError(f"{path}: invalid scenario\n  " + "\n  ".join(lines)) from None


def built_in_scenarios() -> dict[str, Path]:
    """Built-in scenarios by name (file stem)."""
    return {path.stem: path for path in sorted(BUILT_IN_DIR.glob("*.yaml"))}
