"""Printing a scenario report: a readable timeline, or one JSON object (`--json`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from remediators.simulator.results import EventResult, Report

__all__ = ["render_json", "render_text"]


def render_text(report: Report, verbose: bool = False) -> str:
    """The timeline: deploy, resources, each step and event with its decision, expectations."""
    lines = [
        f"== scenario {report.scenario}" + (f": {report.description}" if report.description else "")
    ]
    for entry in report.timeline:
        if entry.event is None:
            lines.append(f"  [{entry.kind}] {entry.text}")
        else:
            lines += _event_lines(entry.event, verbose)
    for check in report.expectations:
        mark = "ok  " if check.passed else "FAIL"
        detail = (
            f"{check.actual}" if check.passed else f"expected {check.expected}, got {check.actual}"
        )
        lines.append(f"  [expect] {mark} {check.check}: {detail}")
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"== {report.scenario}: {verdict}")
    return "\n".join(lines)


def _event_lines(event: EventResult, verbose: bool) -> list[str]:
    lines = [f"  [event] {event.event_id} alarm {event.alarm} -> {event.state}"]
    if not event.routes:
        lines.append("      no deployed rule matches: not delivered (unmatched)")
        return lines
    lines.append(f"      matched rule {', '.join(event.routes)} -> remediator function")
    if event.policy:
        on = f" on {event.target}" if event.target else ""
        lines.append(f"      policy {event.policy}: {event.action}{on}")
    if event.changes:
        verb = {"applied": "applied", "recovered": "recovery"}.get(
            event.outcome if event.outcome == "applied" else str(event.reason), "planned"
        )
        lines += [f"      {verb}: {change}" for change in event.changes]
    if event.before is not None:
        lines.append(f"      before (read): {_compact(event.before)}")
    if event.after is not None:
        lines.append(f"      after (read back): {_compact(event.after)}")
    outcome = event.label + (f" — {event.error}" if event.error else "")
    lines.append(
        f"      outcome: {outcome}"
        + (f" after {event.attempts} attempts" if event.attempts > 1 else "")
    )
    lines += [f"      DENIED by the deployed role: {call}" for call in event.denied]
    if event.dead_letter:
        lines.append(f"      dead-lettered to {event.dead_letter}")
    if event.audit:
        lines.append(f"      audit record: {_compact(_audit_summary(event.audit))}")
    for notification in event.notifications:
        lines.append(f"      notification: {notification['subject']}")
        if verbose:
            lines += [f"        | {line}" for line in notification["message"].splitlines()]
    if verbose:
        lines += [f"      log: {line}" for line in event.logs]
    return lines


def _audit_summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("event_id", "outcome", "reason", "policy", "action", "target", "recorded_at")
    return {key: record[key] for key in keys if record.get(key) is not None}


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def render_json(reports: list[Report]) -> str:
    """One JSON object: per scenario, its events and its expectations."""
    return json.dumps(
        {
            "passed": all(report.passed for report in reports),
            "scenarios": [_report_json(report) for report in reports],
        },
        indent=2,
        default=str,
    )


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "scenario": report.scenario,
        "passed": report.passed,
        "events": [
            {key: value for key, value in asdict(event).items() if key not in ("logs",)}
            for event in report.events
        ],
        "resources": {"before": report.resources_before, "after": report.resources_after},
        "verifications": report.verifications,
        "expectations": [asdict(check) for check in report.expectations],
    }
