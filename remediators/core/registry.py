"""The action interface and the registry of actions by name.

An action declares everything the rest of the system needs to know about it: the params and
target models (validated when the policy file is loaded, so at `cdk synth`), the IAM
permissions it needs on a given target (the stack grants exactly those), whether it is risky
by default, how to find its target in an alarm, and three steps: `plan` (read, compute,
change nothing), `apply` (change), `revert` (restore a recorded before-state), each followed
by `read_back` (the state after the change, as AWS reports it).

A diagnosing action (`DiagnosingAction`, e.g. `api.diagnose`) changes nothing itself: its
`diagnose` reads what happened and chooses the action to run (a registered one, with its target
and params) or none; the chosen action then meets the guardrails as if the policy had named it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from remediators.core.errors import ActionError, UnknownAction
from remediators.core.events import AlarmDetail

__all__ = [
    "Action",
    "DiagnosingAction",
    "Diagnosis",
    "Params",
    "Permission",
    "Plan",
    "Target",
    "declare",
    "get_action",
    "register",
    "registered_actions",
]


class Params(BaseModel):
    """Base of every action's params model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(BaseModel):
    """Base of every action's target model: the resource the action changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def resource_key(self) -> str:
        """A stable name for the resource, e.g. `dynamodb:table/orders` (audit, cooldown)."""
        raise NotImplementedError


class Permission(BaseModel):
    """IAM actions allowed on resources. ARNs may use {partition}, {region}, {account}."""

    model_config = ConfigDict(frozen=True)

    actions: tuple[str, ...]
    resources: tuple[str, ...]
    # IAM conditions as (operator, key, value), e.g. ("StringEquals", "aws:...", "x").
    conditions: tuple[tuple[str, str, str], ...] = ()
    # Required when a resource has a wildcard: why it cannot name the exact ARN.
    why_wildcard: str | None = None

    @model_validator(mode="after")
    def _wildcards_explained(self) -> Permission:
        if any("*" in resource for resource in self.resources) and not self.why_wildcard:
            raise ValueError(f"{self.actions}: a wildcard resource needs `why_wildcard`")
        return self


class Plan(BaseModel):
    """What an action would do: the state read now, the state it would set, in words."""

    model_config = ConfigDict(frozen=True)

    before: dict[str, Any]
    after: dict[str, Any] = Field(default_factory=dict)
    changes: list[str] = Field(default_factory=list)
    # Set when there is nothing to do; the event is recorded as skipped with this reason.
    skip_reason: str | None = None
    note: str = ""


class Diagnosis(BaseModel):
    """What a diagnosing action found: the action it chose (None: nothing it can fix, a person
    must look), that action's target and params as its models take them, the figures behind
    the choice (per resource looked at), and the reason in words."""

    model_config = ConfigDict(frozen=True)

    action: str | None = None
    target: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    figures: dict[str, dict[str, Any]] = Field(default_factory=dict)
    reason: str
    # What was left out of the diagnosis and why (an integration that names no function, ...).
    notes: list[str] = Field(default_factory=list)


ParamsT = TypeVar("ParamsT", bound=Params)
TargetT = TypeVar("TargetT", bound=Target)


class Action(ABC, Generic[ParamsT, TargetT]):
    """One remediation. Subclasses set the class attributes and implement the steps."""

    name: ClassVar[str]
    summary: ClassVar[str]
    params_model: ClassVar[type[Params]]
    target_model: ClassVar[type[Target]]
    risky: ClassVar[bool] = False
    # Changes that lapse (a block for `block_for`): a schedule calls `expire` for them.
    expires: ClassVar[bool] = False
    # Chooses another action instead of changing anything (see `DiagnosingAction`).
    diagnoses: ClassVar[bool] = False
    # Changes of many steps (a restore) run in a state machine of this name: the remediator
    # starts it with the plan instead of calling `apply`.
    flow: ClassVar[str | None] = None

    def __init__(self, target: TargetT, params: ParamsT, alarm: AlarmDetail | None = None) -> None:
        self.target = target
        self.params = params
        # The alarm that called for the action (None for a revert or a sweep): actions that
        # look at what happened over the alarm's window read it.
        self.alarm = alarm

    @classmethod
    @abstractmethod
    def permissions(cls, target: TargetT | None) -> list[Permission]:
        """IAM needed to run on `target`; `None` means the target comes from the alarm."""

    @classmethod
    @abstractmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> TargetT | None:
        """The target named by the alarm's metric dimensions, if it names one."""

    @classmethod
    def choices(cls, params: ParamsT) -> dict[str, Params]:
        """The actions a diagnosing action may choose under `params`, by name, with the params
        it would give them. Nothing for an action that acts itself."""
        return {}

    def diagnose(self) -> Diagnosis:
        """Read what happened and choose the action to run (diagnosing actions only)."""
        raise NotImplementedError(f"{self.name} does not diagnose")

    @abstractmethod
    def read(self) -> dict[str, Any]:
        """The resource's current state, as `plan` records it in `before`."""

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        """The part of a state that says whether the resource was changed since it was read
        (without transient fields such as a status)."""
        return state

    @abstractmethod
    def plan(self) -> Plan:
        """Read the resource and compute the change. Changes nothing."""

    def read_back(self) -> dict[str, Any]:
        """The state after `apply` or `revert` (waiting, bounded, for the change to settle)."""
        return self.read()

    @abstractmethod
    def apply(self, plan: Plan) -> None:
        """Make the planned change."""

    def expire(self, now: datetime) -> list[str]:
        """Undo what of this target's changes has lapsed by `now`; returns what was undone.
        Only actions with `expires` have anything to undo."""
        return []

    @abstractmethod
    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        """Undo a recorded change: `before` and `after` are the states the change recorded
        (`after` as `read_back` reported it). Most actions restore `before`; an action whose
        resource other writers also change (a WAF IP set) undoes only its own part, `after`."""


class DiagnosingAction(Action[ParamsT, TargetT]):
    """An action that only chooses: `diagnose` reads and names the action to run. It never
    reads, plans, applies or reverts a change itself (those run on the chosen action, which is
    also the one its audit records name)."""

    diagnoses: ClassVar[bool] = True

    @abstractmethod
    def diagnose(self) -> Diagnosis:
        """Read what happened over the alarm's window; choose an action, or none."""

    def read(self) -> dict[str, Any]:
        raise self._changes_nothing("read")

    def plan(self) -> Plan:
        raise self._changes_nothing("plan")

    def apply(self, plan: Plan) -> None:
        raise self._changes_nothing("apply")

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        raise self._changes_nothing("revert")

    def _changes_nothing(self, step: str) -> ActionError:
        return ActionError(
            f"{self.name} diagnoses and changes nothing itself: `{step}` runs on the action "
            "its diagnosis chooses"
        )


_ACTIONS: dict[str, type[Action[Any, Any]]] = {}
# The module that defines each action, by name (`declare`): an action's module is imported
# when something first asks for the action, so a cold start loads only the action its event
# runs (every module costs import time; api.diagnose, the largest, about 10 ms).
_MODULES: dict[str, str] = {}

_REQUIRED = ("name", "summary", "params_model", "target_model")


def declare(name: str, module: str) -> None:
    """Say that importing `module` registers the action `name` (see `get_action`)."""
    _MODULES[name] = module


def register(cls: type[Action[ParamsT, TargetT]]) -> type[Action[ParamsT, TargetT]]:
    """Class decorator: register an action under its `name`."""
    missing = [attr for attr in _REQUIRED if not hasattr(cls, attr)]
    if missing:
        raise TypeError(f"action {cls.__name__} does not declare {', '.join(missing)}")
    if cls.name in _ACTIONS and _ACTIONS[cls.name] is not cls:
        raise TypeError(f"action name {cls.name!r} is registered twice")
    _ACTIONS[cls.name] = cls
    return cls


def get_action(name: str) -> type[Action[Any, Any]]:
    """The action registered as `name`, its module imported if this is the first ask;
    UnknownAction lists the valid names."""
    if name not in _ACTIONS and name in _MODULES:
        importlib.import_module(_MODULES[name])
        if name not in _ACTIONS:
            raise RuntimeError(f"{_MODULES[name]} was declared to register {name!r} and did not")
    try:
        return _ACTIONS[name]
    except KeyError:
        if not _ACTIONS and not _MODULES:
            raise RuntimeError(
                "no actions are registered: import remediators.actions first"
            ) from None
        valid = ", ".join(sorted(_ACTIONS.keys() | _MODULES.keys()))
        raise UnknownAction(f"unknown action {name!r}; valid actions: {valid}") from None


def registered_actions() -> dict[str, type[Action[Any, Any]]]:
    """Every registered and declared action by name (a copy; imports every declared module)."""
    for name in _MODULES:
        get_action(name)
    return dict(_ACTIONS)
