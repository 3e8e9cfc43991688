"""The restore flow as synthesized from remediation.yaml (its `orders-restore` policy): the state
machine's shape, and a tasks role that can never delete or change the source table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def template_json(assembly: Path) -> dict[str, Any]:
    return dict(json.loads((assembly / "Autoremediate.template.json").read_text()))


def _resources(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template_json["Resources"].items() if r["Type"] == kind}


@pytest.fixture(scope="module")
def machine(template_json: dict[str, Any]) -> dict[str, Any]:
    [resource] = [
        r
        for r in _resources(template_json, "AWS::StepFunctions::StateMachine").values()
        if r["Properties"]["StateMachineName"] == "autoremediate-Autoremediate-restore"
    ]
    return resource


@pytest.fixture(scope="module")
def states(machine: dict[str, Any]) -> dict[str, Any]:
    """The definition's states (its JSON with the ARNs' tokens left out)."""
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return dict(json.loads("".join(p for p in parts if isinstance(p, str)))["States"])


def _statements_of(template_json: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in _resources(template_json, "AWS::IAM::Policy").values()
        if any(r["Ref"].startswith(role_prefix) for r in policy["Properties"]["Roles"])
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _arns(statement: dict[str, Any]) -> list[str]:
    resources = statement["Resource"]
    resources = resources if isinstance(resources, list) else [resources]
    # A reference to a stack resource shows as `<Ref ...>`, never silently dropped.
    return [
        r
        if isinstance(r, str)
        else "".join(p if isinstance(p, str) else "" for p in r["Fn::Join"][1])
        if "Fn::Join" in r
        else f"<Ref {json.dumps(r)}>"
        for r in resources
    ]


def test_it_is_a_standard_traced_workflow_that_logs_everything(machine: dict[str, Any]) -> None:
    properties = machine["Properties"]

    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    assert properties["LoggingConfiguration"]["Level"] == "ALL"
    assert properties["LoggingConfiguration"]["IncludeExecutionData"] is True


def test_it_asks_twice_and_waits_for_each_decision_at_most_the_policys_timeout(
    states: dict[str, Any],
) -> None:
    callbacks = {
        name: state
        for name, state in states.items()
        if state["Type"] == "Task" and state["Resource"].endswith(".waitForTaskToken")
    }

    assert sorted(callbacks) == ["RequestCutoverApproval", "RequestRestoreApproval"]
    for name, state in callbacks.items():
        assert state["TimeoutSecondsPath"] == "$.timeout_seconds", name
        timeout, failure = state["Catch"]
        assert timeout["ErrorEquals"] == ["States.Timeout"]
        assert timeout["Next"] == name.replace("Request", "Record").replace("Approval", "Timeout")
        assert failure["ErrorEquals"] == ["States.ALL"]
    assert states["RequestRestoreApproval"]["Next"] == "RestoreDecision"
    assert states["RestoreDecision"]["Choices"][0]["Next"] == "StartRestore"
    assert states["RestoreDecision"]["Default"] == "RecordRestoreRejection"
    assert states["CutoverDecision"]["Choices"][0]["Next"] == "Cutover"
    assert states["CutoverDecision"]["Default"] == "RecordCutoverRejection"


def test_every_task_has_a_timeout(states: dict[str, Any]) -> None:
    tasks = {name: state for name, state in states.items() if state["Type"] == "Task"}

    assert sorted(tasks) == [
        "CheckTable",
        "Compensate",
        "Cutover",
        "Prepare",
        "ReapplySettings",
        "RecordCutoverFailure",
        "RecordCutoverRejection",
        "RecordCutoverTimeout",
        "RecordKillSwitchStop",
        "RecordPrepareFailure",
        "RecordRestoreRejection",
        "RecordRestoreTimeout",
        "RecordRestored",
        "RequestCutoverApproval",
        "RequestRestoreApproval",
        "StartRestore",
        "VerifyRestore",
    ]
    assert [
        n for n, s in tasks.items() if not ({"TimeoutSeconds", "TimeoutSecondsPath"} & s.keys())
    ] == []


def test_it_polls_the_new_table_with_a_bounded_wait_loop(states: dict[str, Any]) -> None:
    ready = states["TableReady"]

    assert states["StartRestore"]["Next"] == "CheckTable"
    assert states["CheckTable"]["Next"] == "TableReady"
    assert ready["Choices"] == [
        {"Variable": "$.job.table_status", "StringEquals": "ACTIVE", "Next": "ReapplySettings"},
        {
            "Variable": "$.job.polls",
            "NumericGreaterThanEqualsPath": "$.max_polls",
            "Next": "TableNeverActive",
        },
    ]
    assert ready["Default"] == "WaitForTable"
    assert states["WaitForTable"] == {
        "Type": "Wait",
        "SecondsPath": "$.poll_seconds",
        "Next": "CheckTable",
    }
    assert states["TableNeverActive"]["Next"] == "Compensate"


def test_a_failure_deletes_the_copy_until_it_is_verified_and_keeps_it_after(
    states: dict[str, Any],
) -> None:
    def catches(step: str) -> list[tuple[list[str], str]]:
        return [(c["ErrorEquals"], c["Next"]) for c in states[step]["Catch"]]

    everything = ["States.ALL"]
    stop = (["KillSwitchOff"], "RecordKillSwitchStop")
    assert catches("StartRestore") == [stop, (everything, "Compensate")]
    for step in ("CheckTable", "ReapplySettings", "VerifyRestore"):
        assert catches(step) == [(everything, "Compensate")]
    assert catches("RequestCutoverApproval")[1] == (everything, "RecordCutoverFailure")
    assert catches("Cutover") == [stop, (everything, "RecordCutoverFailure")]
    assert states["Compensate"]["Next"] == "RestoreFailed"
    assert states["RecordCutoverFailure"]["Next"] == "RestoreFailed"
    assert states["RestoreFailed"]["Type"] == "Fail"
    assert states["Prepare"]["Catch"][0]["Next"] == "RecordPrepareFailure"


def test_the_tasks_that_record_the_ending_are_retried(states: dict[str, Any]) -> None:
    recording = [name for name in states if name.startswith("Record") or name == "Compensate"]

    assert len(recording) == 9
    for name in recording:
        [retry] = [r for r in states[name]["Retry"] if r["ErrorEquals"] == ["States.TaskFailed"]]
        assert retry["MaxAttempts"] == 3, name


def test_the_tasks_may_delete_only_restored_copies_never_the_source(
    template_json: dict[str, Any],
) -> None:
    statements = _statements_of(template_json, "RestoreTasksRole")
    allows = [s for s in statements if s["Effect"] == "Allow"]

    deletable = sorted(
        arn for s in allows if "dynamodb:DeleteTable" in s["Action"] for arn in _arns(s)
    )
    assert deletable == ["arn::dynamodb:::table/orders-restored-*"]
    writes_on_source = [
        action
        for s in allows
        if "arn::dynamodb:::table/orders" in _arns(s)
        for action in s["Action"]
        if action.split(":")[1].startswith(("Update", "Delete", "Put", "BatchWrite", "Tag"))
    ]
    assert writes_on_source == []


def test_the_tasks_may_change_only_the_setting_the_policy_names(
    template_json: dict[str, Any],
) -> None:
    statements = _statements_of(template_json, "RestoreTasksRole")
    [ssm] = [s for s in statements if "ssm:PutParameter" in s["Action"]]

    assert _arns(ssm) == ["arn::ssm:::parameter/shop/orders/table-name"]
    assert not any("lambda:UpdateFunctionConfiguration" in s["Action"] for s in statements)
