"""The policy file: good files load, bad files fail naming the policy and the field."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from remediators.actions.dynamodb_scale_capacity import ScaleCapacityParams, TableTarget
from remediators.core.errors import PolicyFileError
from remediators.core.policy import load_policy_file, load_shipped_policy_file, parse_policy_data
from tests.conftest import ROOT


def _policy(**overrides: Any) -> dict[str, Any]:
    policy = {
        "name": "orders-throttling",
        "alarm": {"name_prefix": "orders-ddb-throttle"},
        "action": "dynamodb.scale_capacity",
        "target": {"table": "orders"},
        "params": {"factor": 2, "max_read": 4000},
    }
    return {**policy, **overrides}


def _error(data: Any) -> str:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy_data(data, "remediation.yaml")
    return str(caught.value)


def test_the_example_policy_file_loads_with_typed_targets_and_params() -> None:
    policy_file = load_policy_file(ROOT / "remediation.yaml")

    orders = policy_file.policies[0]
    assert orders.target == TableTarget(table="orders")
    assert orders.params == ScaleCapacityParams(factor=2, max_read=4000, max_write=4000)
    assert policy_file.cooldown(orders) == timedelta(minutes=15)
    assert policy_file.cooldown(policy_file.policies[1]) == timedelta(minutes=30)
    assert policy_file.channel(orders) == "ops"


def test_defaults_apply_when_a_policy_sets_nothing() -> None:
    policy_file = parse_policy_data({"policies": [_policy(params=None)]}, "p.yaml")

    policy = policy_file.policies[0]
    assert policy.params == ScaleCapacityParams()
    assert policy_file.dry_run(policy) is False
    assert policy_file.cooldown(policy) == timedelta(minutes=15)
    assert policy.needs_approval() is False


def test_a_bad_param_names_the_policy_and_the_field() -> None:
    message = _error({"policies": [_policy(params={"factor": 0.5})]})

    assert "remediation.yaml" in message
    assert "policy 'orders-throttling' (policies[0]) field params.factor" in message
    assert "greater than 1" in message


def test_a_cap_above_the_dynamodb_quota_is_refused() -> None:
    message = _error({"policies": [_policy(params={"max_write": 50_000})]})

    assert "params.max_write" in message
    assert "40000" in message


def test_an_unknown_param_is_refused() -> None:
    assert "params.facter: Extra inputs are not permitted" in _error(
        {"policies": [_policy(params={"facter": 2})]}
    )


def test_an_unknown_action_lists_the_valid_ones_and_nothing_else() -> None:
    message = _error({"policies": [_policy(action="dynamodb.scale")]})

    assert "field action: unknown action 'dynamodb.scale'" in message
    assert "valid actions: api.diagnose, dynamodb.restore_from_backup, dynamodb.scale_capacity" in (
        message
    )
    assert "target" not in message
    assert "params" not in message


def test_a_bad_target_names_the_field() -> None:
    assert "field target.table" in _error({"policies": [_policy(target={"table": "a b"})]})


@pytest.mark.parametrize(
    "alarm",
    [{}, {"name": "a", "name_prefix": "a"}],
    ids=["neither", "both"],
)
def test_an_alarm_selector_needs_exactly_one_of_name_or_prefix(alarm: dict[str, str]) -> None:
    assert "exactly one of `name`, `name_prefix` or `preset`" in _error(
        {"policies": [_policy(alarm=alarm)]}
    )


def test_overlapping_alarm_selectors_are_refused() -> None:
    message = _error(
        {
            "policies": [
                _policy(),
                _policy(name="orders-writes", alarm={"name": "orders-ddb-throttle-writes"}),
            ]
        }
    )

    assert "'orders-throttling'" in message
    assert "'orders-writes'" in message
    assert "would both answer the same alarm" in message


def test_duplicate_policy_names_are_refused() -> None:
    message = _error({"policies": [_policy(), _policy(alarm={"name": "other"})]})

    assert "repeated: orders-throttling" in message


def test_notify_must_name_a_defined_channel() -> None:
    message = _error({"policies": [_policy(notify="pager")]})

    assert "notify 'pager' is not a channel" in message


@pytest.mark.parametrize("cooldown", ["15 minutes", -300, True, "-5m"])
def test_a_bad_duration_is_refused(cooldown: Any) -> None:
    assert "is not a duration" in _error({"policies": [_policy(cooldown=cooldown)]})


def test_durations_accept_seconds_and_units() -> None:
    policy_file = parse_policy_data(
        {"policies": [_policy(cooldown=90)], "defaults": {"cooldown": "0s"}}, "p"
    )

    assert policy_file.cooldown(policy_file.policies[0]) == timedelta(seconds=90)
    assert policy_file.defaults.cooldown == timedelta(0)


@pytest.mark.parametrize(
    "alarm", [{"name_prefix": "auto"}, {"name": "autoremediate-Autoremediate-remediator-errors"}]
)
def test_a_selector_that_could_match_autoremediates_own_alarms_is_refused(
    alarm: dict[str, str],
) -> None:
    assert "watch autoremediate itself" in _error({"policies": [_policy(alarm=alarm)]})


def test_max_actions_per_day_defaults_to_3_and_can_be_set_per_policy() -> None:
    policy_file = parse_policy_data(
        {"policies": [_policy(), _policy(name="b", alarm={"name": "b"}, max_actions_per_day=5)]},
        "p",
    )

    assert [policy_file.max_actions_per_day(p) for p in policy_file.policies] == [3, 5]


def test_a_policy_that_needs_approval_needs_a_channel_for_the_approval_email() -> None:
    assert "needs a notification channel" in _error({"policies": [_policy(approval="required")]})
    assert "needs a notification channel" in _error(
        {"policies": [_policy(action="lambda.rollback_alias", target=None, params=None)]}
    )


def test_approval_timeout_defaults_to_1h_and_is_bounded() -> None:
    channel = {
        "notifications": {"ops": {"email": ["a@example.com"]}},
        "defaults": {"notify": "ops"},
    }
    policy_file = parse_policy_data(
        {
            **channel,
            "policies": [
                _policy(approval="required"),
                _policy(name="b", alarm={"name": "b"}, approval="required", approval_timeout="5m"),
            ],
        },
        "p",
    )

    timeouts = [policy_file.approval_timeout(p) for p in policy_file.policies]
    assert timeouts == [timedelta(hours=1), timedelta(minutes=5)]
    assert policy_file.policies[0].needs_approval()
    too_long = {**channel, "policies": [_policy(approval_timeout="400d")]}
    assert "approval_timeout must be between 1s and 365 days" in _error(too_long)


def test_an_empty_file_is_refused() -> None:
    assert "remediation.yaml: invalid policy file" in _error(None)


def test_unreadable_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("policies: [\n")

    with pytest.raises(PolicyFileError, match=r"broken\.yaml: not valid YAML"):
        load_policy_file(broken)
    with pytest.raises(PolicyFileError, match=r"missing\.yaml: cannot read"):
        load_policy_file(tmp_path / "missing.yaml")


def test_the_shipped_json_form_loads_to_the_same_policies(tmp_path: Path) -> None:
    original = load_policy_file(ROOT / "remediation.yaml")
    shipped = tmp_path / "policy.json"
    shipped.write_text(original.model_dump_json(exclude_none=True))

    assert load_policy_file(shipped) == original


def test_alarm_names_match_by_exact_name_or_prefix() -> None:
    policy_file = parse_policy_data(
        {"policies": [_policy(), _policy(name="exact", alarm={"name": "sessions"})]}, "p"
    )

    assert policy_file.policy_for_alarm("orders-ddb-throttle-writes").name == "orders-throttling"
    assert policy_file.policy_for_alarm("sessions").name == "exact"
    assert policy_file.policy_for_alarm("sessions-2") is None


def test_a_preset_alarm_is_named_after_its_policy_and_needs_its_target() -> None:
    policy_file = parse_policy_data(
        {"policies": [_policy(alarm={"preset": "dynamodb-throttling"})]}, "p"
    )

    selector = policy_file.policies[0].alarm
    assert selector.name == "orders-throttling-dynamodb-throttling"
    assert selector.preset is not None
    assert selector.preset.settings() == (10, timedelta(minutes=1), 2)
    assert "needs `target.table`" in _error(
        {"policies": [_policy(alarm={"preset": "dynamodb-throttling"}, target=None)]}
    )


def test_preset_settings_are_overridable_and_lambda_timeouts_needs_a_threshold() -> None:
    preset = {"kind": "error-rate", "threshold": 2.5, "period": "10m", "evaluation_periods": 3}
    policy_file = parse_policy_data(
        {
            "policies": [
                _policy(
                    action="lambda.raise_timeout",
                    target={"function": "api"},
                    params=None,
                    alarm={"preset": preset},
                )
            ]
        },
        "p",
    )

    assert policy_file.policies[0].alarm.preset.settings() == (2.5, timedelta(minutes=10), 3)
    assert "preset lambda-timeouts needs a threshold" in _error(
        {
            "policies": [
                _policy(
                    action="lambda.raise_timeout",
                    target={"function": "api"},
                    params=None,
                    alarm={"preset": "lambda-timeouts"},
                )
            ]
        }
    )


def _shipped(tmp_path: Path, data: dict[str, Any] | None = None) -> Path:
    path = tmp_path / "policy.json"
    if data is None:
        path.write_text(
            load_policy_file(ROOT / "remediation.yaml").model_dump_json(exclude_none=True)
        )
    else:
        path.write_text(json.dumps(data))
    return path


def test_the_shipped_file_answers_every_lookup_as_the_validated_file_does(tmp_path: Path) -> None:
    validated = load_policy_file(ROOT / "remediation.yaml")
    shipped = load_shipped_policy_file(_shipped(tmp_path))

    assert shipped.policies == validated.policies
    assert shipped.defaults == validated.defaults
    assert shipped.notifications == validated.notifications
    for policy in validated.policies:
        alarm = policy.alarm.name or f"{policy.alarm.name_prefix}-x"
        assert shipped.policy_for_alarm(alarm) == validated.policy_for_alarm(alarm) == policy
        assert shipped.policy_named(policy.name) == policy
        assert shipped.policies_running(policy.action) == validated.policies_running(policy.action)
        assert shipped.cooldown(policy) == validated.cooldown(policy)
    assert shipped.policy_for_alarm("no-such-alarm") is None
    assert shipped.policy_named("no-such-policy") is None


def test_a_shipped_policy_is_validated_when_first_looked_up_and_a_bad_one_is_named(
    tmp_path: Path,
) -> None:
    data = {
        "policies": [
            _policy(),
            _policy(name="broken", alarm={"name": "sessions"}, params={"factor": "lots"}),
        ]
    }
    shipped = load_shipped_policy_file(_shipped(tmp_path, data))

    good = shipped.policy_for_alarm("orders-ddb-throttle-read")
    assert good is not None
    assert good.params == ScaleCapacityParams(factor=2, max_read=4000)
    with pytest.raises(PolicyFileError, match=r"policy\.json: policy 'broken' is invalid"):
        shipped.policy_for_alarm("sessions")


def test_a_shipped_file_that_is_no_policy_file_is_refused_on_load(tmp_path: Path) -> None:
    not_json = tmp_path / "policy.json"
    not_json.write_text("{")

    with pytest.raises(PolicyFileError, match="not a policy file as synth writes it"):
        load_shipped_policy_file(not_json)
    with pytest.raises(PolicyFileError, match="not a policy file as synth writes it"):
        load_shipped_policy_file(_shipped(tmp_path, {"defaults": {}}))
    with pytest.raises(PolicyFileError, match="cannot read policy file"):
        load_shipped_policy_file(tmp_path / "missing.json")
