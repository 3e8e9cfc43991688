"""A scenario's expectations checked against what its run produced."""

from __future__ import annotations

from typing import Any

from remediators.simulator.results import Check, Report
from remediators.simulator.scenario import Scenario

__all__ = ["check_expectations"]


def check_expectations(scenario: Scenario, report: Report) -> list[Check]:
    checks = []
    expected_outcomes = scenario.expect.outcomes
    if expected_outcomes is not None:
        # `skipped` matches any skip; `skipped:cooldown` only that reason.
        actual = [event.label for event in report.events]
        passed = len(actual) == len(expected_outcomes) and all(
            wanted in (event.outcome, event.label)
            for wanted, event in zip(expected_outcomes, report.events, strict=True)
        )
        checks.append(Check("outcomes", expected_outcomes, actual, passed))
    denied = sorted({call for event in report.events for call in event.denied})
    checks.append(Check("least privilege: every call allowed by the role", [], denied, not denied))
    expected_resources: list[tuple[str, str, list[Any]]] = [
        ("dynamodb_tables", "dynamodb table", scenario.expect.resources.dynamodb_tables),
        ("lambda_functions", "lambda function", scenario.expect.resources.lambda_functions),
        ("waf_ip_sets", "WAF IP set", scenario.expect.resources.waf_ip_sets),
        ("restored_tables", "restored copies of", scenario.expect.resources.restored_tables),
    ]
    for kind, label, expectations in expected_resources:
        states = report.resources_after.get(kind, {})
        for expected in expectations:
            key = getattr(expected, "name", None) or expected.source
            state = states.get(key)
            wanted = expected.model_dump(exclude_none=True, exclude={"name", "source"})
            if "addresses" in wanted:
                wanted["addresses"] = sorted(wanted["addresses"])
            wanted = {key: value for key, value in wanted.items() if value != {}}
            actual_values = {key: (state or {}).get(key) for key in wanted}
            if "aliases" in wanted:
                actual_values["aliases"] = _as_expected(wanted["aliases"], actual_values["aliases"])
            checks.append(
                Check(
                    f"{label} {key}",
                    wanted,
                    actual_values,
                    state is not None and actual_values == wanted,
                )
            )
    after = report.resources_after
    for setting in scenario.expect.resources.table_settings:
        value = setting.value
        if setting.restored_from is not None:
            copy = after.get("restored_tables", {}).get(setting.restored_from, {})
            value = copy.get("name", "(no restored copy)")
        if setting.parameter is not None:
            actual = after.get("ssm_parameters", {}).get(setting.parameter)
        else:
            function = after.get("lambda_functions", {}).get(setting.function, {})
            actual = function.get("environment", {}).get(setting.variable)
        checks.append(Check(setting.label, value, actual, actual == value))
    return checks


def _as_expected(wanted: dict[str, dict[str, Any]], actual: dict[str, Any] | None) -> Any:
    """Each alias's state with only the fields its expectation names (an alias expected by
    its version alone is still expected to have no weights)."""
    actual = actual or {}
    return {
        alias: {field: actual[alias].get(field) for field in fields} if alias in actual else None
        for alias, fields in wanted.items()
    }
