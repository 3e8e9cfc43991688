"""Bad input never acts and never goes unrecorded: a corpus of events and policy files
(tests/corpus), and generated ones (hypothesis)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remediators.core.audit import AuditStore, Outcome
from remediators.core.errors import PolicyFileError
from remediators.core.policy import load_policy_file, parse_policy_data
from tests.conftest import LambdaContext, load_event

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
# What each corpus event must end as: (outcome, reason).
EXPECTED = {
    "wrong-source": ("invalid", "invalid_event"),
    "wrong-detail-type": ("invalid", "invalid_event"),
    "no-alarm-name": ("invalid", "invalid_event"),
    "no-state": ("invalid", "invalid_event"),
    "unknown-state": ("invalid", "invalid_event"),
    "absurd-timestamp": ("invalid", "invalid_event"),
    "detail-is-a-list": ("invalid", "invalid_event"),
    "state-ok": ("skipped", "ok_without_action"),
    "state-insufficient-data": ("skipped", "not_alarm"),
    "alarm-in-no-policy": ("skipped", "no_policy"),
    "composite-without-target": ("skipped", "no_target"),
    "target-does-not-exist": ("skipped", "target_not_found"),
}


@pytest.fixture
def targetless(function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed remediator, with a policy that takes its table from the alarm."""
    monkeypatch.setenv("POLICY_PATH", str(CORPUS / "policy-without-targets.json"))


def test_the_corpus_covers_every_expected_case() -> None:
    assert sorted(p.stem for p in (CORPUS / "events").glob("*.json")) == sorted(EXPECTED)


@pytest.mark.usefixtures("targetless")
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_bad_event_is_recorded_with_its_reason_and_acts_on_nothing(
    handler: Any, function_env: dict[str, str], name: str
) -> None:
    event = json.loads((CORPUS / "events" / f"{name}.json").read_text())
    calls: list[str] = []
    from remediators.core.aws import client

    client("dynamodb").meta.events.register(
        "before-call.dynamodb.UpdateTable", lambda **_: calls.append("UpdateTable")
    )

    result = handler(event, LambdaContext())

    assert (result["outcome"], result["reason"]) == EXPECTED[name]
    assert AuditStore(function_env["AUDIT_TABLE_NAME"]).get(result["event_id"]) is not None
    assert calls == []


@pytest.mark.parametrize(
    "path", sorted((CORPUS / "policies").glob("*.yaml")), ids=lambda path: path.stem
)
def test_a_bad_policy_file_fails_validation_naming_the_problem(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")

    with pytest.raises(PolicyFileError) as caught:
        load_policy_file(path)

    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """A valid alarm event with one field dropped or replaced by an arbitrary value."""
    base = load_event("single_metric")
    paths = [
        ("id",),
        ("source",),
        ("detail-type",),
        ("time",),
        ("detail",),
        ("detail", "alarmName"),
        ("detail", "state"),
        ("detail", "state", "value"),
        ("detail", "state", "timestamp"),
        ("detail", "configuration"),
        ("detail", "configuration", "metrics"),
    ]

    def mutate(path: tuple[str, ...], value: Any, drop: bool) -> dict[str, Any]:
        event = copy.deepcopy(base)
        node = event
        for key in path[:-1]:
            node = node[key]
        if drop:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        return event

    return st.builds(mutate, st.sampled_from(paths), json_values, st.booleans())


@pytest.mark.usefixtures("targetless")
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=st.one_of(st.dictionaries(st.text(max_size=10), json_values), _mutations()))
def test_any_event_ends_recorded_and_never_acts_on_a_missing_table(
    handler: Any, function_env: dict[str, str], event: dict[str, Any]
) -> None:
    from remediators.core.aws import client

    writes: list[str] = []
    hook = lambda **_: writes.append("UpdateTable")  # noqa: E731
    client("dynamodb").meta.events.register("before-call.dynamodb.UpdateTable", hook)
    try:
        result = handler(event, LambdaContext())
    finally:
        client("dynamodb").meta.events.unregister("before-call.dynamodb.UpdateTable", hook)

    assert result.get("duplicate") or result["outcome"] in (Outcome.INVALID, Outcome.SKIPPED)
    assert AuditStore(function_env["AUDIT_TABLE_NAME"]).get(result["event_id"]) is not None
    assert writes == []


@given(data=st.dictionaries(st.text(max_size=12), json_values, max_size=4))
def test_any_policy_data_either_validates_or_fails_with_a_policy_file_error(
    data: dict[str, Any],
) -> None:
    try:
        parse_policy_data(data, "generated.yaml")
    except PolicyFileError as error:
        message = str(error)
    else:
        return
    assert message.startswith("generated.yaml: invalid policy file")
