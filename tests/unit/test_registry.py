"""Every registered action declares its schema, IAM and risk, and has tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import remediators.actions
from remediators.core import registry
from remediators.core.errors import UnknownAction
from remediators.core.registry import (
    Action,
    Params,
    Permission,
    Target,
    get_action,
    register,
    registered_actions,
)
from tests.conftest import ROOT

ACTIONS = registered_actions()
MUTATING_PREFIXES = ("Update", "Put", "Register", "Create", "Delete", "Set", "Modify", "Restore")
# Granted on `*` because AWS checks them there for another service: Application Auto Scaling
# probes PutMetricAlarm and DeleteAlarms "without any parameters" (no alarm, so no alarm ARN)
# before RegisterScalableTarget/PutScalingPolicy, and refuses the call if they are denied:
# https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_permission_validation.html
CHECKED_ON_STAR = frozenset({"cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"})


def test_there_are_actions_to_walk() -> None:
    assert "dynamodb.scale_capacity" in ACTIONS


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_action_declares_its_models_and_summary(name: str) -> None:
    action = ACTIONS[name]

    assert issubclass(action.params_model, Params)
    assert issubclass(action.target_model, Target)
    assert action.summary
    assert isinstance(action.risky, bool)
    # Every param has a default, or says (in its description) why the policy must give it.
    required = action.params_model.model_json_schema().get("required", [])
    fields = action.params_model.model_fields
    assert [field for field in required if not fields[field].description] == []


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_action_declares_iam_and_never_a_mutating_action_on_star(name: str) -> None:
    action = ACTIONS[name]
    for permissions in (action.permissions(None), _some_target_permissions(action)):
        assert permissions
        assert all(isinstance(p, Permission) for p in permissions)
        for permission in permissions:
            if "*" in permission.resources:
                mutating = [
                    a
                    for a in permission.actions
                    if a.split(":")[1].startswith(MUTATING_PREFIXES) and a not in CHECKED_ON_STAR
                ]
                assert not mutating, f"{name}: {mutating} on '*'"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_each_action_has_its_own_tests(name: str) -> None:
    module = ACTIONS[name].__module__.rsplit(".", 1)[1]

    assert (ROOT / "tests" / "actions" / f"test_{module}.py").exists()


def test_an_unknown_action_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownAction, match=r"valid actions: .*dynamodb\.scale_capacity"):
        get_action("nope")


def test_each_declared_module_registers_the_action_it_is_declared_for() -> None:
    assert {
        name: ACTIONS[name].__module__ for name in ACTIONS
    } == remediators.actions.ACTION_MODULES


def test_a_declared_module_that_registers_nothing_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry._MODULES, "test.nothing", "remediators.core.clock")

    with pytest.raises(RuntimeError, match=r"remediators\.core\.clock was declared to register"):
        get_action("test.nothing")


_FIRST_EVENT = """
import json, sys
import remediators.handlers.alarm as handler
from remediators.core.settings import Settings
loaded_at_init = sorted(m for m in sys.modules if m.startswith("remediators.actions."))
policy = handler._remediator(Settings.from_env()).policies.policy_for_alarm(sys.argv[1])
print(json.dumps({
    "init": loaded_at_init,
    "first_event": sorted(m for m in sys.modules if m.startswith("remediators.actions.")),
    "action": policy.action,
}))
"""


def test_a_cold_start_loads_only_the_action_of_the_policy_its_event_matches(
    tmp_path: Path,
) -> None:
    from remediators.core.policy import load_policy_file

    shipped = tmp_path / "policy.json"
    shipped.write_text(
        load_policy_file(ROOT / "remediation.yaml").model_dump_json(exclude_none=True)
    )
    environment = {
        "POLICY_PATH": str(shipped),
        "AUDIT_TABLE_NAME": "audit",
        "LOCKS_TABLE_NAME": "locks",
        "IDEMPOTENCY_TABLE_NAME": "idempotency",
        "KILL_SWITCH_PARAMETER": "/autoremediate/actions",
        "NOTIFICATION_TOPICS": "{}",
        "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler",
        "VERIFIER_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:verifier",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    run = subprocess.run(
        [sys.executable, "-c", _FIRST_EVENT, "orders-ddb-throttle-read"],
        env=environment,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(run.stdout)

    assert loaded == {
        "init": [],
        "first_event": ["remediators.actions.dynamodb_scale_capacity"],
        "action": "dynamodb.scale_capacity",
    }


def test_registering_an_action_without_declarations_fails() -> None:
    class Incomplete(Action[Any, Any]):  # no name, summary or models
        pass

    with pytest.raises(TypeError, match="does not declare name, summary, params_model"):
        register(Incomplete)  # type: ignore[type-abstract]


def test_a_wildcard_permission_must_say_why() -> None:
    with pytest.raises(ValueError, match="why_wildcard"):
        Permission(actions=("dynamodb:DescribeTable",), resources=("*",))


def _some_target_permissions(action: type[Action[Any, Any]]) -> list[Permission]:
    fields = {
        name: "example"
        for name, field in action.target_model.model_fields.items()
        if field.is_required()
    }
    return action.permissions(action.target_model.model_validate(fields))
