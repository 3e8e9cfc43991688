"""The policy file (`remediation.yaml`): which alarms trigger which actions, and how.

The same models validate the file at `cdk synth` (so a bad policy fails before deploy) and in
the Lambda function at run time (the validated file travels in the code asset as JSON).
Actions must be registered (import `remediators.actions`) before a file is loaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from remediators.core.errors import PolicyFileError, UnknownAction
from remediators.core.registry import Action, Params, Target, get_action

__all__ = [
    "PRESET_DEFAULTS",
    "PRESET_TARGET",
    "SELF_ALARM_PREFIX",
    "AlarmPreset",
    "AlarmSelector",
    "Defaults",
    "NotificationChannel",
    "Policies",
    "Policy",
    "PolicyFile",
    "ShippedPolicyFile",
    "format_duration",
    "load_policy_file",
    "load_shipped_policy_file",
    "parse_policy_data",
]

# The stack's own alarms (errors, dead letters) start with this and are never remediated.
SELF_ALARM_PREFIX = "autoremediate-"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _parse_duration(value: Any) -> timedelta:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    elif isinstance(value, timedelta) and value >= timedelta(0):
        return value
    raise ValueError(f"{value!r} is not a duration like 30s, 15m, 6h or 1d")


def format_duration(value: timedelta) -> str:
    """The shortest exact form in the policy file's syntax: 1d, 6h, 15m, 90s."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta, BeforeValidator(_parse_duration), PlainSerializer(format_duration, return_type=str)
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlarmPreset(_Model):
    """An alarm the stack creates for the policy (for teams without the right alarm yet)."""

    kind: Literal["dynamodb-throttling", "lambda-timeouts", "error-rate", "api-5xx"]
    threshold: float | None = Field(default=None, gt=0)
    period: Duration | None = None
    evaluation_periods: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    def settings(self) -> tuple[float, timedelta, int]:
        """Threshold, period and evaluation periods: the policy's, else the preset's."""
        threshold, period, periods = PRESET_DEFAULTS[self.kind]
        if self.threshold is None and threshold is None:
            raise ValueError(f"preset {self.kind} needs a threshold")
        return (
            self.threshold if self.threshold is not None else float(threshold or 0),
            self.period or period,
            self.evaluation_periods or periods,
        )


# Per preset: (threshold, period, evaluation periods), and the target field naming the resource.
# dynamodb-throttling: read + write throttle events in a period; lambda-timeouts: maximum
# Duration in ms (no default: it depends on the function's timeout, e.g. 80% of it);
# error-rate: 100 * Errors / Invocations, in percent; api-5xx: an API Gateway REST API's
# 5XXError responses in a period.
PRESET_DEFAULTS: dict[str, tuple[float | None, timedelta, int]] = {
    "dynamodb-throttling": (10, timedelta(minutes=1), 2),
    "lambda-timeouts": (None, timedelta(minutes=1), 1),
    "error-rate": (5, timedelta(minutes=5), 1),
    "api-5xx": (50, timedelta(minutes=1), 2),
}
PRESET_TARGET = {
    "dynamodb-throttling": "table",
    "lambda-timeouts": "function",
    "error-rate": "function",
    "api-5xx": "api",
}


class AlarmSelector(_Model):
    """Which alarms a policy answers: one exact name, every name with a prefix, or the alarm
    the stack creates from a preset (named `<policy>-<preset>`)."""

    name: str | None = Field(default=None, min_length=1, max_length=255)
    name_prefix: str | None = Field(default=None, min_length=1, max_length=255)
    preset: AlarmPreset | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AlarmSelector:
        if self.preset is not None:
            if self.name_prefix is not None:
                raise ValueError("give exactly one of `name`, `name_prefix` or `preset`")
            self.preset.settings()  # a preset without the threshold it needs fails here
            return self  # the policy names its alarm (the validated file keeps the name)
        if (self.name is None) == (self.name_prefix is None):
            raise ValueError("give exactly one of `name`, `name_prefix` or `preset`")
        if self.overlaps(AlarmSelector.model_construct(name_prefix=SELF_ALARM_PREFIX)):
            raise ValueError(
                f"alarms named {SELF_ALARM_PREFIX}* watch autoremediate itself and are never "
                "remediated; choose a selector that cannot match them"
            )
        return self

    def matches(self, alarm_name: str) -> bool:
        """Whether an alarm of this name belongs to the policy."""
        if self.name is not None:
            return alarm_name == self.name
        return alarm_name.startswith(self.name_prefix or "")

    def overlaps(self, other: AlarmSelector) -> bool:
        """Whether some alarm name would match both selectors."""
        mine, theirs = self.name or self.name_prefix or "", other.name or other.name_prefix or ""
        if self.name is not None and other.name is not None:
            return mine == theirs
        if self.name is not None:
            return other.matches(mine)
        if other.name is not None:
            return self.matches(theirs)
        return mine.startswith(theirs) or theirs.startswith(mine)

    def describe(self) -> str:
        """`name X`, `prefix X` or `preset X (name Y)`, for messages."""
        if self.preset is not None:
            return f"preset {self.preset.kind} (name {self.name!r})"
        return f"name {self.name!r}" if self.name is not None else f"prefix {self.name_prefix!r}"


class NotificationChannel(_Model):
    """Where notifications go; the stack subscribes each address to the channel's topic."""

    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(
        default_factory=list
    )


class Defaults(_Model):
    """Settings a policy inherits unless it sets its own."""

    dry_run: bool = False
    cooldown: Duration = timedelta(minutes=15)
    max_actions_per_day: int = Field(default=3, ge=1, le=100)
    # Escalate when the alarm is still in ALARM this long after an action; 0s: never check.
    verify_within: Duration = timedelta(minutes=30)
    # How long an operator has to approve a change that needs approval; then it is dropped.
    approval_timeout: Duration = timedelta(hours=1)
    notify: str | None = None

    @field_validator("approval_timeout")
    @classmethod
    def _approval_window(cls, value: timedelta) -> timedelta:
        return _approval_window(value)


class Policy(_Model):
    """One alarm-to-action rule. `target` and `params` are validated by the action's models."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    alarm: AlarmSelector
    action: str
    target: SerializeAsAny[Target] | None = None
    params: SerializeAsAny[Params] = Field(default=None, validate_default=True)
    approval: Literal["required", "never"] | None = None
    dry_run: bool | None = None
    cooldown: Duration | None = None
    max_actions_per_day: int | None = Field(default=None, ge=1, le=100)
    verify_within: Duration | None = None
    approval_timeout: Duration | None = None
    notify: str | None = None

    @field_validator("approval_timeout")
    @classmethod
    def _approval_window(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _approval_window(value)

    @field_validator("action")
    @classmethod
    def _known_action(cls, name: str) -> str:
        try:
            get_action(name)
        except UnknownAction as error:
            raise ValueError(str(error)) from None
        return name

    @field_validator("target", mode="before")
    @classmethod
    def _target_of_action(cls, value: Any, info: ValidationInfo) -> Any:
        action = _action_of(info)
        if value is None or action is None:  # no action, no target schema: only that error
            return None
        return action.target_model.model_validate(value)

    @field_validator("params", mode="before")
    @classmethod
    def _params_of_action(cls, value: Any, info: ValidationInfo) -> Any:
        action = _action_of(info)
        if action is None:  # no action, no params schema: only the action error
            return Params()
        return action.params_model.model_validate({} if value is None else value)

    @model_validator(mode="after")
    def _flows_ask_an_operator(self) -> Policy:
        flow = self.action_class.flow
        if flow is not None and self.approval == "never":
            raise ValueError(
                f"{self.action} runs the {flow} flow, which always asks an operator (before it "
                "changes anything): `approval: never` cannot apply"
            )
        if flow is not None and self.target is None:
            # Its other settings (the cutover) belong to one resource: never one from an alarm.
            raise ValueError(f"{self.action} needs `target`: its params are that resource's")
        return self

    @model_validator(mode="after")
    def _name_preset_alarm(self) -> Policy:
        preset = self.alarm.preset
        if preset is None:
            return self
        field = PRESET_TARGET[preset.kind]
        if self.target is None or getattr(self.target, field, None) is None:
            raise ValueError(
                f"alarm preset {preset.kind} needs `target.{field}`: the stack creates the "
                "alarm for that resource"
            )
        name = f"{self.name}-{preset.kind}"
        if self.alarm.name not in (None, name):
            raise ValueError(f"the preset alarm of this policy is named {name!r}; drop `name`")
        if name.startswith(SELF_ALARM_PREFIX):
            raise ValueError(f"a preset alarm may not be named {SELF_ALARM_PREFIX}*")
        return self.model_copy(update={"alarm": self.alarm.model_copy(update={"name": name})})

    @property
    def action_class(self) -> type[Action[Any, Any]]:
        """The registered action this policy runs."""
        return get_action(self.action)

    def needs_approval(self, action_class: type[Action[Any, Any]] | None = None) -> bool:
        """Whether running `action_class` (the action a diagnosis chose) for this policy needs
        approval: `approval` when set, else whether that action is risky by default. Without
        `action_class`: whether anything this policy runs may need approval (its action, or
        one its diagnosis may choose), as the stack and the notification check ask."""
        if self.approval is not None:
            return self.approval == "required"
        if action_class is not None:
            return action_class.risky
        chosen = self.action_class.choices(self.params)
        return self.action_class.risky or any(get_action(name).risky for name in chosen)


# Step Functions waits at most a year for a task token; a decision needs at least a second.
_MAX_APPROVAL_WINDOW = timedelta(days=365)


def _approval_window(value: timedelta) -> timedelta:
    if not timedelta(seconds=1) <= value <= _MAX_APPROVAL_WINDOW:
        raise ValueError("approval_timeout must be between 1s and 365 days")
    return value


def _action_of(info: ValidationInfo) -> type[Action[Any, Any]] | None:
    name = info.data.get("action")  # absent when `action` itself failed validation
    return get_action(name) if name else None


class Policies:
    """What the policies of a file come to: each setting of a policy, or the file's default;
    the policy answering an alarm, or of a name. The validated file (`PolicyFile`) and the
    code asset's (`ShippedPolicyFile`) share it."""

    if TYPE_CHECKING:

        @property
        def defaults(self) -> Defaults: ...

        @property
        def policies(self) -> Sequence[Policy]: ...

    def policy_for_alarm(self, alarm_name: str) -> Policy | None:
        """The policy that answers `alarm_name` (selectors are disjoint, so at most one)."""
        return next((p for p in self.policies if p.alarm.matches(alarm_name)), None)

    def policy_named(self, name: str) -> Policy | None:
        """The policy called `name`, if the file still has it."""
        return next((p for p in self.policies if p.name == name), None)

    def policies_running(self, action: str) -> list[Policy]:
        """The policies whose action is `action`."""
        return [p for p in self.policies if p.action == action]

    def dry_run(self, policy: Policy) -> bool:
        """The policy's dry-run setting, or the default."""
        return self.defaults.dry_run if policy.dry_run is None else policy.dry_run

    def cooldown(self, policy: Policy) -> timedelta:
        """The policy's cooldown, or the default."""
        return self.defaults.cooldown if policy.cooldown is None else policy.cooldown

    def max_actions_per_day(self, policy: Policy) -> int:
        """The circuit breaker's limit for the policy's resource, or the default."""
        if policy.max_actions_per_day is None:
            return self.defaults.max_actions_per_day
        return policy.max_actions_per_day

    def verify_within(self, policy: Policy) -> timedelta:
        """How long after an action its alarm must have left ALARM (0: not checked)."""
        return self.defaults.verify_within if policy.verify_within is None else policy.verify_within

    def approval_timeout(self, policy: Policy) -> timedelta:
        """How long a change of this policy waits for an operator's decision."""
        if policy.approval_timeout is None:
            return self.defaults.approval_timeout
        return policy.approval_timeout

    def channel(self, policy: Policy) -> str | None:
        """The notification channel of a policy, or the default one."""
        return policy.notify or self.defaults.notify


class PolicyFile(_Model, Policies):
    """The whole `remediation.yaml`, validated in full (at synth, and by the CLI)."""

    defaults: Defaults = Field(default_factory=Defaults)
    notifications: dict[str, NotificationChannel] = Field(default_factory=dict)
    policies: list[Policy] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyFile:
        names = [policy.name for policy in self.policies]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"policy names must be unique; repeated: {', '.join(duplicates)}")
        for i, first in enumerate(self.policies):
            for second in self.policies[i + 1 :]:
                if first.alarm.overlaps(second.alarm):
                    raise ValueError(
                        f"policies {first.name!r} ({first.alarm.describe()}) and "
                        f"{second.name!r} ({second.alarm.describe()}) would both answer "
                        "the same alarm; make their alarm selectors disjoint"
                    )
        channels = {"defaults": self.defaults.notify} | {p.name: p.notify for p in self.policies}
        for owner, channel in channels.items():
            if channel is not None and channel not in self.notifications:
                known = ", ".join(sorted(self.notifications)) or "none defined"
                raise ValueError(
                    f"{owner}: notify {channel!r} is not a channel under `notifications` ({known})"
                )
        for policy in self.policies:
            if policy.needs_approval() and self.channel(policy) is None:
                raise ValueError(
                    f"policy {policy.name!r} needs approval (action {policy.action} is, or may "
                    "choose, a risky one, or `approval: required`), so it needs a notification "
                    "channel for the approval email: set `notify` on it or in `defaults`"
                )
        return self


class ShippedPolicyFile(Policies):
    """The policy file as a function's code asset carries it (JSON written at synth from a
    `PolicyFile`, so validated in full then: every policy's target and params by its action's
    models, the file's consistency). The function trusts its own asset: it validates a policy,
    and so imports that policy's action module, only when it first looks the policy up (one
    event needs one policy: a cold start loads one action, not all). The file level (defaults,
    notifications, each policy's name, action and alarm selector) is validated on load."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.source = source
        self._defaults = Defaults.model_validate(data.get("defaults", {}))
        self.notifications = {
            name: NotificationChannel.model_validate(channel)
            for name, channel in data.get("notifications", {}).items()
        }
        self._data: list[dict[str, Any]] = data["policies"]
        self._selectors = [AlarmSelector.model_validate(p["alarm"]) for p in self._data]
        self._validated: dict[int, Policy] = {}

    @property
    def defaults(self) -> Defaults:
        return self._defaults

    @property
    def policies(self) -> list[Policy]:
        """Every policy, validated (each validated once)."""
        return [self._policy(index) for index in range(len(self._data))]

    def policy_for_alarm(self, alarm_name: str) -> Policy | None:
        index = next((i for i, s in enumerate(self._selectors) if s.matches(alarm_name)), None)
        return None if index is None else self._policy(index)

    def policy_named(self, name: str) -> Policy | None:
        index = next((i for i, p in enumerate(self._data) if p["name"] == name), None)
        return None if index is None else self._policy(index)

    def policies_running(self, action: str) -> list[Policy]:
        return [self._policy(i) for i, p in enumerate(self._data) if p["action"] == action]

    def _policy(self, index: int) -> Policy:
        if index not in self._validated:
            try:
                self._validated[index] = Policy.model_validate(self._data[index])
            except ValidationError as error:  # an asset not written by synth, or edited
                raise PolicyFileError(
                    f"{self.source}: policy {self._data[index].get('name')!r} is invalid: {error}"
                ) from None
        return self._validated[index]


def parse_policy_data(data: Any, source: str) -> PolicyFile:
    """Validate already-loaded policy data; errors name the file, the policy and the field."""
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as error:
        lines = [_describe_error(data, err) for err in error.errors()]
        raise PolicyFileError(f"{source}: invalid policy file\n  " + "\n  ".join(lines)) from None


def load_policy_file(path: str | Path) -> PolicyFile:
    """Read and validate a policy file (YAML, or JSON as shipped in the code asset)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyFileError(f"{path}: cannot read policy file: {error.strerror}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PolicyFileError(f"{path}: not valid JSON: {error}") from None
    else:
        import yaml  # only the CLI and synth read YAML; the Lambda reads JSON

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PolicyFileError(f"{path}: not valid YAML: {error}") from None
    return parse_policy_data(data, str(path))


def load_shipped_policy_file(path: str | Path) -> ShippedPolicyFile:
    """Read the policy file of a function's code asset (see `ShippedPolicyFile`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return ShippedPolicyFile(data, str(path))
    except OSError as error:
        raise PolicyFileError(f"{path}: cannot read policy file: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSON, ValidationError
        raise PolicyFileError(f"{path}: not a policy file as synth writes it: {error}") from None


def _describe_error(data: Any, error: Any) -> str:
    loc = list(error["loc"])
    where = ""
    if len(loc) >= 2 and loc[0] == "policies" and isinstance(loc[1], int):
        index = loc[1]
        name = None
        policies = data.get("policies") if isinstance(data, dict) else None
        if (
            isinstance(policies, list)
            and index < len(policies)
            and isinstance(policies[index], dict)
        ):
            name = policies[index].get("name")
        where = f"policy {name!r} (policies[{index}])" if name else f"policies[{index}]"
        loc = loc[2:]
    field = ".".join(str(part) for part in loc)
    parts = [part for part in (where, field) if part]
    message = error["msg"].removeprefix("Value error, ")
    return f"{' field '.join(parts) or 'file'}: {message}"
