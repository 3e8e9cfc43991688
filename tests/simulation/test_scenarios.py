"""Every built-in scenario passes on the local AWS; bad scenario input exits 2 with a message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from remediators.cli.main import main
from remediators.simulator.permission_use import unused_permissions
from remediators.simulator.results import Report
from remediators.simulator.runner import Simulator
from remediators.simulator.scenario import built_in_scenarios, load_scenario

BUILT_IN = built_in_scenarios()


def _run(simulator: Simulator, name: str) -> Report:
    return simulator.run(load_scenario(BUILT_IN[name]), name)


def test_there_is_a_scenario_per_shipped_path() -> None:
    assert {
        "throttled-table",
        "autoscaled-table",
        "on-demand-table",
        "table-at-cap",
        "cooldown",
        "missing-table",
        "bad-events",
        "duplicate-delivery",
        "kill-switch",
        "flapping-alarm",
        "revert-and-history",
        "unresolved-alarm",
        "dead-letter-replay",
        "timing-out-function",
        "bad-deploy-rolled-back",
        "preset-alarm",
        "approval-approved",
        "approval-rejected",
        "approval-timeout",
        "ip-block-approved",
        "restore-approved",
        "restore-rejected",
        "restore-cutover-timeout",
        "restore-failed-compensated",
        "restore-from-alarm",
        "lambda-preset-alarms",
        "api-errors-diagnosed",
        "throttled-function",
        "alias-timeout-new-version",
        "canary-left-to-its-deploy",
        "canary-rolled-back",
        "edge-ip-block-from-eu",
    } <= set(BUILT_IN)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_each_built_in_scenario_meets_its_expectations(simulator: Simulator, name: str) -> None:
    report = _run(simulator, name)

    failed = [check for check in report.expectations if not check.passed]
    assert report.expectations, f"{name} checks nothing"
    assert failed == []


def test_throttled_table_reads_before_and_after_back_from_the_local_aws(
    simulator: Simulator,
) -> None:
    report = _run(simulator, "throttled-table")

    assert report.resources_before["dynamodb_tables"]["orders"]["read"] == 5
    assert report.resources_after["dynamodb_tables"]["orders"]["read"] == 10
    [event] = report.events
    assert event.routes
    assert event.routes[0].startswith("Autoremediate-TriggersAlarmRule")
    assert event.audit is not None
    assert event.audit["outcome"] == "applied"
    assert event.audit["after"]["capacity"]["table"] == {"read": 10, "write": 10}
    assert [n["subject"] for n in event.notifications] == [
        "[autoremediate] Remediated dynamodb:table/orders"
    ]


def test_an_approved_ip_block_blocks_the_flooders_only_until_it_expires(
    simulator: Simulator,
) -> None:
    report = _run(simulator, "ip-block-approved")

    pending, applied, expired = report.events
    assert pending.outcome == "pending"
    assert [n["subject"] for n in pending.notifications] == [
        "[autoremediate] Approve a change to WAF IP set blocked-ips (REGIONAL)? 123456789012 "
        "us-east-1"
    ]
    # Busiest first; the allowlisted 198.51.100.20 and the quiet 192.0.2.99 are not blocked.
    assert applied.after is not None
    assert applied.after["added"] == ["203.0.113.5/32", "203.0.113.9/32"]
    assert applied.audit is not None
    assert applied.audit["approval"]["decision"] == "approve"
    assert applied.audit["approval"]["source_ip"] == "198.51.100.7"
    assert (expired.reason, expired.after) == (
        "expired",
        {"undone": ["203.0.113.5/32", "203.0.113.9/32"]},
    )


@pytest.mark.parametrize(
    ("decision_step", "outcome"),
    [({"reject": "latest"}, "skipped:rejected"), ({"await_approval_timeout": "latest"}, None)],
)
def test_an_ip_block_rejected_or_left_undecided_blocks_nothing(
    simulator: Simulator, tmp_path: Path, decision_step: dict[str, str], outcome: str | None
) -> None:
    data = yaml.safe_load(BUILT_IN["ip-block-approved"].read_text())
    # A short decision window for the undecided case (real seconds on moto's interpreter).
    policy_file = yaml.safe_load(
        (BUILT_IN["ip-block-approved"].parent / data["policy"]).read_text()
    )
    for policy in policy_file["policies"]:
        if policy["name"] == "shop-abusers" and outcome is None:
            # Only the undecided case waits it out; a link must outlive a slow machine.
            policy["approval_timeout"] = "2s"
    data.pop("policy")
    data.update(policy_file)
    data["steps"] = [{"fire": "shop-abusers-api-5xx"}, decision_step]
    data["expect"]["outcomes"] = ["pending", outcome or "skipped:approval_timeout"]
    path = tmp_path / "ip-block-undecided.yaml"
    path.write_text(yaml.safe_dump(data))

    report = simulator.run(load_scenario(path), str(path))

    assert [check for check in report.expectations if not check.passed] == []
    assert report.resources_after["waf_ip_sets"]["blocked-ips"] == {"addresses": ["192.0.2.10/32"]}
    escalation = report.events[-1].notifications
    assert any("ESCALATION" in n["subject"] for n in escalation)
    from remediators.core.operations import list_approvals

    [approval] = list_approvals(report.stack, everything=True)
    assert approval["status"] == ("rejected" if outcome else "expired")


def test_an_operator_rejects_from_the_cli_once(simulator: Simulator, tmp_path: Path) -> None:
    from remediators.core.operations import ApprovalRefused, decide_approval, list_approvals

    data = yaml.safe_load(BUILT_IN["approval-rejected"].read_text())
    data["policy"] = str(BUILT_IN["approval-rejected"].parent / data["policy"])
    data["steps"] = [{"fire": "gated-errors-payments-live"}, {"reject": "cli"}]
    path = tmp_path / "rejected-by-cli.yaml"
    path.write_text(yaml.safe_dump(data))

    report = simulator.run(load_scenario(path), str(path))

    assert [check for check in report.expectations if not check.passed] == []
    assert report.events[-1].audit is not None
    decided = report.events[-1].audit["approval"]
    assert (decided["decision"], decided["source_ip"]) == ("reject", "cli")
    assert "arn:aws:" in decided["user_agent"]  # the caller's IAM identity
    [approval] = list_approvals(report.stack, everything=True)
    assert approval["status"] == "rejected"
    assert list_approvals(report.stack) == []
    with pytest.raises(ApprovalRefused, match="rejected already"):
        decide_approval(report.stack, approval["approval_id"], "approve")


def test_the_unresolved_alarm_is_verified_and_escalated_by_its_schedule(
    simulator: Simulator,
) -> None:
    report = _run(simulator, "unresolved-alarm")

    [verification] = report.verifications
    assert verification["verified"] is False
    assert verification["event_id"] == report.events[0].event_id


def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(
    simulator: Simulator, tmp_path: Path
) -> None:
    scenario = tmp_path / "fails.yaml"
    scenario.write_text(
        f"name: fails\npolicy: {BUILT_IN['throttled-table'].parent / 'policies/built-in.yaml'}\n"
        "resources: {dynamodb_tables: [{name: orders}]}\n"
        "alarms: [{name: orders-ddb-throttle-x, namespace: AWS/DynamoDB,"
        " metric: WriteThrottleEvents, dimensions: {TableName: orders}}]\n"
        "steps:\n"
        "  - inject_fault: {call: dynamodb.UpdateTable, error: InternalServerError, times: 5}\n"
        "  - fire: orders-ddb-throttle-x\n"
    )

    report = simulator.run(load_scenario(scenario), str(scenario))

    [event] = report.events
    assert event.outcome == "failed"
    assert event.attempts == 3  # the first try and Lambda's two async retries
    assert event.dead_letter is not None
    assert "RemediatorDeadLetters" in event.dead_letter
    assert event.audit is not None
    assert event.audit["outcome"] == "failed"
    assert [n["subject"] for n in event.notifications] == [
        "[autoremediate] ESCALATION: failed on dynamodb:table/orders"
    ]


def test_json_report_has_events_and_expectations(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["simulate", "table-at-cap", "--json"])

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    [scenario] = report["scenarios"]
    [event] = scenario["events"]
    assert (event["outcome"], event["reason"], event["policy"]) == (
        "skipped",
        "at_cap",
        "ledger-throttling",
    )
    assert {"event_id", "action", "target", "before", "after"} <= set(event)
    assert scenario["expectations"][0]["passed"] is True


def test_unmet_expectations_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BUILT_IN["table-at-cap"].read_text().replace('["skipped:at_cap"]', "[applied]")
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(
        text.replace(
            "policies/built-in.yaml",
            str(BUILT_IN["table-at-cap"].parent / "policies/built-in.yaml"),
        )
    )

    assert main(["simulate", str(scenario)]) == 1
    assert "FAIL outcomes: expected ['applied'], got ['skipped:at_cap']" in capsys.readouterr().out


def test_list_names_every_built_in_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(BUILT_IN)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read scenario"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a list\n", "a scenario is a mapping"),
        ("name: x\npolicy: p.yaml\n", "steps: Field required"),
        ("name: x\npolicy: p.yaml\nsteps: [{jump: now}]\n", "a step is one of"),
        (
            f"name: x\npolicy: {BUILT_IN['throttled-table'].parent / 'policies/built-in.yaml'}\n"
            "steps: [{fire: nope}]\n",
            "'nope' is neither one of the scenario's alarms nor one the stack deployed",
        ),
        ("name: x\nsteps: [{wait: 1m}]\n", "exactly one of `policy`"),
        ("name: x\npolicy: missing.yaml\nsteps: [{wait: 1m}]\n", "cannot read policy file"),
        (
            "name: x\npolicies: [{name: p, alarm: {name: a}, action: nope}]\nsteps: [{wait: 1m}]\n",
            "field action: unknown action 'nope'",
        ),
        ("name: x\npolicy: p.yaml\nsteps: [{wait: soon}]\n", "'soon' is not a duration"),
        (
            "name: x\npolicy: p.yaml\nresources: {dynamodb_tables: [{name: t}, {name: t}]}\n"
            "steps: [{wait: 1m}]\n",
            "repeated: t",
        ),
        (
            "name: x\npolicy: p.yaml\nresources: {dynamodb_tables: [{name: t,"
            " autoscaling: {read: {min: 9, max: 3}}}]}\nsteps: [{wait: 1m}]\n",
            "min 9 is above max 3",
        ),
    ],
    ids=[
        "missing",
        "yaml",
        "not-mapping",
        "no-steps",
        "bad-step",
        "unknown-alarm",
        "no-policy",
        "missing-policy",
        "bad-policy",
        "bad-wait",
        "same-table",
        "bad-bounds",
    ],
)
def test_bad_scenario_input_exits_2_naming_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    scenario = tmp_path / "scenario.yaml"
    if content is not None:
        scenario.write_text(content)

    status = main(["simulate", str(scenario)])

    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_an_unreadable_event_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    policy = BUILT_IN["throttled-table"].parent / "policies/built-in.yaml"
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"name: x\npolicy: {policy}\nsteps: [{{event: bad.json}}]\n")

    assert main(["simulate", str(scenario)]) == 2
    assert "bad.json: not valid JSON" in capsys.readouterr().err


def test_an_unknown_scenario_name_lists_the_built_in_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "nope"]) == 2
    assert "built-in: " in capsys.readouterr().err


def test_validate_accepts_the_example_and_rejects_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import ROOT

    assert main(["validate", str(ROOT / "remediation.yaml")]) == 0
    assert "valid, 8 policies" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies: []\n")
    assert main(["validate", str(bad)]) == 2
    assert "  policies: List should have at least 1 item" in capsys.readouterr().err


def test_a_call_the_deployed_role_does_not_allow_fails_the_scenario(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remediators.simulator.access import AccessChecker

    original = AccessChecker.allowed
    monkeypatch.setattr(
        AccessChecker,
        "allowed",
        lambda self, call: call.action != "sns:Publish" and original(self, call),
    )

    report = _run(simulator, "throttled-table")

    [check] = [c for c in report.expectations if c.check.startswith("least privilege")]
    assert not check.passed
    [denied] = check.actual
    assert denied.startswith("sns:Publish on arn:aws:sns:us-east-1:123456789012:")


def test_permissions_no_call_used_are_reported_per_role(simulator: Simulator) -> None:
    report = _run(simulator, "throttled-table")

    unused = unused_permissions([report])
    # Per role: the remediator's (which the approval tasks share) and the endpoint's.
    [remediator] = [role for role in report.permissions if role.startswith("RemediatorRole")]
    [endpoint] = [role for role in report.permissions if role.startswith("ApprovalEndpointRole")]
    grants = report.permissions[remediator]
    used = sorted(grant for grant, was_used in grants.items() if was_used)
    # The scale-up used its grants (named by logical id, so deployments compare) ...
    assert any(g.startswith("dynamodb:UpdateTable on arn:aws:dynamodb:") for g in used)
    assert any(g.startswith("dynamodb:PutItem on ") and "<AuditTable" in g for g in used)
    assert not set(used) & set(unused[remediator])
    # ... and nothing of the rollback's or the approval endpoint's (never invoked here).
    assert any(g.startswith("lambda:UpdateAlias on ") for g in unused[remediator])
    assert unused[endpoint] == sorted(report.permissions[endpoint])
    # A second scenario that uses the rollback's grants takes them off the list.
    rollback = _run(simulator, "bad-deploy-rolled-back")
    together = unused_permissions([report, rollback])
    assert not any(g.startswith("lambda:UpdateAlias on ") for g in together[remediator])


def test_a_throttled_function_without_a_reservation_is_escalated_not_reserved(
    simulator: Simulator,
) -> None:
    report = _run(simulator, "throttled-function")

    assert report.passed
    search = report.events[-1]
    assert [n["subject"] for n in search.notifications] == [
        "[autoremediate] ESCALATION: no_reservation on lambda:function/search-api"
    ]
    assert "reserved" not in report.resources_after["lambda_functions"]["search-api"]
    raised = report.events[2]
    assert raised.changes[0] == (
        "reserved concurrency 150 -> 200 (not 225: the account keeps min_unreserved 700)"
    )


def test_a_scenario_in_another_region_deploys_there_and_writes_cloudfront_sets_at_us_east_1(
    simulator: Simulator,
) -> None:
    report = _run(simulator, "edge-ip-block-from-eu")

    deployed = [e.text for e in report.timeline if e.kind == "deploy" and "deployed" in e.text]
    assert deployed
    assert deployed[0].startswith("deployed stack Autoremediate in eu-west-1 ")
    [blocked, lifted] = report.events
    assert (blocked.outcome, lifted.outcome) == ("applied", "applied")
    assert report.passed


def test_an_alias_is_a_version_or_a_version_with_one_weighted_other() -> None:
    from pydantic import ValidationError

    from remediators.simulator.scenario import FunctionSpec

    plain = FunctionSpec(name="checkout", versions=3, aliases={"live": "3"})
    canary = FunctionSpec(
        name="checkout", versions=3, aliases={"live": {"version": "2", "weights": {"3": 0.1}}}
    )

    assert (plain.aliases["live"].version, plain.aliases["live"].weights) == ("3", {})
    assert canary.aliases["live"].weights == {"3": 0.1}
    for bad in ({"version": "2", "weights": {"2": 0.1}}, {"version": "2", "weights": {"3": 1.5}},
                {"version": "2", "weights": {"3": 0.1, "1": 0.1}}):  # fmt: skip
        with pytest.raises(ValidationError):
            FunctionSpec(name="checkout", versions=3, aliases={"live": bad})
