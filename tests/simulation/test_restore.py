"""The restore flow end to end on the local AWS, from the deployed state machine: the paths
the built-in scenarios do not take (a slow restore, one that never finishes, no backup), and
what the operator is told."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from remediators.simulator.results import Report
from remediators.simulator.runner import Simulator
from remediators.simulator.scenario import built_in_scenarios, load_scenario

BUILT_IN = built_in_scenarios()
POLICY = str(BUILT_IN["restore-approved"].parent / "policies" / "built-in.yaml")


def _scenario(tmp_path: Path, name: str, **fields: Any) -> Path:
    data = {"name": name, "policy": POLICY, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(simulator: Simulator, path: Path) -> Report:
    return simulator.run(load_scenario(path), str(path))


def _orders(**table: Any) -> dict[str, Any]:
    return {
        "dynamodb_tables": [{"name": "orders", "items": 6, **table}],
        "ssm_parameters": {"/shop/orders/table-name": "orders"},
    }


@pytest.fixture
def creating_for(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make moto's restored tables report CREATING for their first `n` descriptions (moto
    restores at once; DynamoDB takes minutes to hours), and refuse to delete one then, as
    DynamoDB does (ResourceInUseException)."""
    from moto.dynamodb.exceptions import ResourceInUseException
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import RestoredTable

    original, delete = RestoredTable.describe, DynamoDBBackend.delete_table

    def use(n: int | None) -> list[int]:
        seen = [0]

        def describe(self: Any, base_key: str = "TableDescription") -> dict[str, Any]:
            result: dict[str, Any] = original(self, base_key)
            seen[0] += 1
            if n is None or seen[0] <= n:
                result[base_key]["TableStatus"] = "CREATING"
            return result

        def delete_table(self: Any, name: str) -> Any:
            table = self.get_table(name)
            if isinstance(table, RestoredTable) and (n is None or seen[0] <= n):
                raise ResourceInUseException()
            return delete(self, name)

        monkeypatch.setattr(RestoredTable, "describe", describe)
        monkeypatch.setattr(DynamoDBBackend, "delete_table", delete_table)
        return seen

    return use


def test_a_slow_restore_is_polled_until_the_copy_is_active(
    simulator: Simulator, tmp_path: Path, creating_for: Any
) -> None:
    creating_for(3)  # the restore's own answer, then two checks
    path = _scenario(
        tmp_path,
        "slow-restore",
        resources=_orders(backup=True),
        steps=[{"restore": "orders"}, {"approve": "latest"}, {"approve": "cli"}],
        expect={"outcomes": ["pending", "pending", "applied"]},
    )

    report = _run(simulator, path)

    assert report.passed, [c for c in report.expectations if not c.passed]
    final = report.events[-1]
    assert any(change.endswith("ACTIVE after 3 checks") for change in final.changes)
    assert final.after is not None
    assert final.after["setting"] == final.after["restored_table"]


def test_a_copy_that_never_becomes_active_is_left_for_a_person_and_escalated(
    simulator: Simulator, tmp_path: Path, creating_for: Any
) -> None:
    creating_for(None)
    path = _scenario(
        tmp_path,
        "stuck-restore",
        resources=_orders(backup=True),
        steps=[{"restore": "orders"}, {"approve": "latest"}],
        expect={
            "outcomes": ["pending", "failed"],
            "resources": {
                # DynamoDB refuses to delete a table it is still creating.
                "restored_tables": [{"source": "orders", "copies": 1}],
                "table_settings": [{"parameter": "/shop/orders/table-name", "value": "orders"}],
            },
        },
    )

    report = _run(simulator, path)

    assert report.passed, [c for c in report.expectations if not c.passed]
    final = report.events[-1]
    assert final.reason == "restore_failed"
    assert final.error is not None
    assert "never became ACTIVE" in final.error
    assert "is still being restored and could not be deleted: delete it by hand" in final.error
    assert any(c.endswith("CREATING after 5 checks") for c in final.changes)  # max_polls
    [email] = final.notifications
    assert email["subject"] == "[autoremediate] ESCALATION: restore_failed on dynamodb:table/orders"


def test_a_table_without_a_backup_fails_before_anyone_is_asked(
    simulator: Simulator, tmp_path: Path
) -> None:
    from remediators.core.operations import list_approvals

    path = _scenario(
        tmp_path,
        "no-backup",
        resources=_orders(),
        steps=[{"restore": "orders"}],
        expect={"outcomes": ["failed"]},
    )

    report = _run(simulator, path)

    assert report.passed, [c for c in report.expectations if not c.passed]
    [event] = report.events
    assert event.error is not None
    assert "orders has no available backup" in event.error
    assert [n["subject"] for n in event.notifications] == [
        "[autoremediate] ESCALATION: restore_failed on dynamodb:table/orders"
    ]
    assert list_approvals(report.stack, everything=True) == []
    assert report.resources_after["restored_tables"]["orders"] == {"copies": 0}


def test_the_emails_say_what_will_change_and_the_source_is_kept(simulator: Simulator) -> None:
    report = simulator.run(load_scenario(BUILT_IN["restore-approved"]), "restore-approved")

    assert report.passed
    first, second, final = report.events
    copy = report.resources_after["restored_tables"]["orders"]["name"]
    [restore_email] = first.notifications
    assert "restore orders from backup arn:aws:dynamodb:" in restore_email["message"]
    assert f"40 items into a new table {copy}" in restore_email["message"]
    [cutover_email] = second.notifications
    body = cutover_email["message"]
    assert f"point SSM parameter /shop/orders/table-name at {copy} (now orders)" in body
    assert (
        "verified: 40 items restored, 40 expected; 20 of 20 sampled keys are in the source" in body
    )
    assert "re-applied: TTL on expires_at" in body
    assert "orders is kept; delete it by hand once you are sure" in body
    assert restore_email["message"] != body  # two approvals, two links
    assert final.audit is not None
    assert final.audit["approval"]["decision"] == "approve"
    # The source table is still there, with every item.
    count = boto3.client("dynamodb").scan(TableName="orders", Select="COUNT")["Count"]
    assert count == 40


def test_a_cutover_nobody_decided_is_closed_not_left_pending(simulator: Simulator) -> None:
    from remediators.core.operations import list_approvals

    report = simulator.run(
        load_scenario(BUILT_IN["restore-cutover-timeout"]), "restore-cutover-timeout"
    )

    assert report.passed
    statuses = sorted(a["status"] for a in list_approvals(report.stack, everything=True))
    assert statuses == ["approved", "expired"]
    assert list_approvals(report.stack) == []
    [email] = report.events[-1].notifications
    assert (
        email["subject"] == "[autoremediate] ESCALATION: cutover_timeout on dynamodb:table/ledger"
    )
    assert "The restored copy is kept" in email["message"]


def test_an_alarm_starts_one_restore_and_a_re_fire_while_it_runs_starts_none(
    simulator: Simulator, tmp_path: Path
) -> None:
    path = _scenario(
        tmp_path,
        "alarm-restore",
        resources=_orders(backup=True),
        alarms=[
            {
                "name": "orders-integrity-errors",
                "namespace": "Shop",
                "metric": "IntegrityErrors",
                "dimensions": {"TableName": "orders"},
            }
        ],
        steps=[
            {"fire": "orders-integrity-errors"},
            {"fire": "orders-integrity-errors"},  # through OK, then ALARM again
            {"approve": "latest"},
            {"approve": "cli"},
        ],
        expect={
            "outcomes": [
                "pending",
                "skipped:ok_without_action",
                "skipped:flow_in_progress",
                "pending",
                "applied",
            ],
            "resources": {
                "restored_tables": [{"source": "orders", "copies": 1, "items": 6}],
                "table_settings": [
                    {"parameter": "/shop/orders/table-name", "restored_from": "orders"}
                ],
            },
        },
    )

    report = _run(simulator, path)

    # Least privilege included: the remediator plans with its own role, the flow with its own.
    assert report.passed, [c for c in report.expectations if not c.passed]


@pytest.mark.parametrize(
    ("before_cutover", "label", "reason"),
    [
        ({"kill_switch": "disabled"}, "skipped:disabled", "the kill switch is off: no cutover"),
        (
            {"inject_fault": {"call": "ssm.PutParameter", "error": "AccessDeniedException"}},
            "failed",
            "AccessDeniedException",
        ),
    ],
    ids=["kill-switch", "cutover-fails"],
)
def test_a_verified_copy_is_kept_when_the_cutover_does_not_happen(
    simulator: Simulator,
    tmp_path: Path,
    before_cutover: dict[str, Any],
    label: str,
    reason: str,
) -> None:
    path = _scenario(
        tmp_path,
        "no-cutover",
        resources=_orders(backup=True),
        steps=[{"restore": "orders"}, {"approve": "latest"}, before_cutover, {"approve": "cli"}],
        expect={
            "outcomes": ["pending", "pending", label],
            "resources": {
                "restored_tables": [{"source": "orders", "copies": 1, "items": 6}],
                "table_settings": [{"parameter": "/shop/orders/table-name", "value": "orders"}],
            },
        },
    )

    report = _run(simulator, path)

    assert report.passed, [c for c in report.expectations if not c.passed]
    final = report.events[-1]
    assert final.error is not None
    assert reason in final.error
    [email] = final.notifications
    assert email["subject"].startswith("[autoremediate] ESCALATION: ")


def test_a_restore_refuses_when_the_application_reads_another_table(
    simulator: Simulator, tmp_path: Path
) -> None:
    resources = _orders(backup=True)
    resources["ssm_parameters"] = {"/shop/orders/table-name": "orders-restored-20261101-000000"}
    path = _scenario(
        tmp_path,
        "moved",
        resources=resources,
        steps=[{"restore": "orders"}],
        expect={"outcomes": ["failed"]},
    )

    report = _run(simulator, path)

    assert report.passed, [c for c in report.expectations if not c.passed]
    [event] = report.events
    assert event.error is not None
    assert "reads 'orders-restored-20261101-000000', not orders" in event.error
    assert report.resources_after["restored_tables"]["orders"] == {"copies": 0}
