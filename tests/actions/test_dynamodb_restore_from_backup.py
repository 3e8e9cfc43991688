"""dynamodb.restore_from_backup's steps on moto: finding the backup or point in time, restoring
into a new table, re-applying what a restore does not copy, verifying, cutting over, and
discarding a failed copy (never the source, never one in use). The whole flow runs in
tests/simulation (test_restore.py and the restore-* scenarios)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from remediators.actions.dynamodb_restore_from_backup import (
    CutoverSetting,
    RestoreFromBackup,
    RestoreJob,
    RestoreParams,
    restored_name,
)
from remediators.actions.dynamodb_scale_capacity import TableTarget
from remediators.core.aws import client
from remediators.core.errors import ActionError
from remediators.core.registry import Plan
from tests.conftest import create_function

pytestmark = pytest.mark.usefixtures("aws")

PARAMETER = "/shop/orders/table-name"


def _table(name: str = "orders", items: int = 5, **options: Any) -> str:
    ddb = boto3.client("dynamodb")
    arn = ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        **options,
    )["TableDescription"]["TableArn"]
    for i in range(items):
        ddb.put_item(TableName=name, Item={"id": {"S": f"item-{i}"}})
    return str(arn)


def _backup(name: str = "orders") -> str:
    arn = boto3.client("dynamodb").create_backup(TableName=name, BackupName=f"{name}-b")
    return str(arn["BackupDetails"]["BackupArn"])


def _action(table: str = "orders", **params: Any) -> RestoreFromBackup:
    params.setdefault("cutover", {"parameter": PARAMETER})
    return RestoreFromBackup(TableTarget(table=table), RestoreParams(**params))


def _job(action: RestoreFromBackup, **fields: Any) -> RestoreJob:
    plan = action.plan()
    return RestoreJob(
        event_id="restore-test",
        policy="orders-restore",
        table=action.target.table,
        restored_table=plan.after["restored_table"],
        source=plan.after["source"],
        requested_by="test",
        requested_at=datetime.now(UTC),
        source_settings=action.read_source_settings(),
        **fields,
    )


def _setting(value: str = "orders") -> None:
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=value, Type="String")


def test_plan_finds_the_latest_available_backup_and_changes_nothing() -> None:
    _table(items=3)
    _backup()
    time.sleep(0.01)  # backups are ordered by creation time
    boto3.client("dynamodb").put_item(TableName="orders", Item={"id": {"S": "late"}})
    latest = _backup()
    _setting()

    plan = _action().plan()

    assert plan.skip_reason is None
    assert plan.after["source"]["backup_arn"] == latest
    assert plan.after["source"]["expected_items"] == 4
    assert plan.after["restored_table"].startswith("orders-restored-")
    assert plan.before == {"table": "orders", "status": "ACTIVE"}  # the setting is the flow's
    assert plan.changes[0].startswith(f"restore orders from backup {latest}")
    assert boto3.client("dynamodb").list_tables()["TableNames"] == ["orders"]


def test_no_backup_is_a_skip_naming_why() -> None:
    _table()

    plan = _action().plan()

    assert (plan.skip_reason, plan.note) == ("no_backup", "orders has no available backup")


def test_a_backup_of_another_table_is_refused() -> None:
    _table()
    _table("invoices")
    other = _backup("invoices")

    plan = _action().plan(backup_arn=other)

    assert plan.skip_reason == "no_backup"
    assert plan.note == f"backup {other} is of table invoices"


def test_point_in_time_needs_pitr_and_uses_the_latest_restorable_time() -> None:
    _table()
    action = _action(source="pitr_latest")
    assert action.plan().note == "orders has no point-in-time recovery enabled"
    boto3.client("dynamodb").update_continuous_backups(
        TableName="orders", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )

    plan = action.plan()

    assert plan.after["source"]["point_in_time"] is True
    assert plan.after["source"]["backup_arn"] is None
    assert "its latest restorable point in time" in plan.changes[0]


def test_the_restored_name_is_the_source_and_a_utc_timestamp() -> None:
    at = datetime(2026, 11, 26, 18, 5, 9, tzinfo=UTC)

    assert restored_name("orders", at) == "orders-restored-20261126-180509"
    with pytest.raises(ActionError, match="too long"):
        restored_name("t" * 240, at)


def test_restore_makes_a_new_table_with_the_backups_items_and_a_retry_finds_it() -> None:
    _table(items=7)
    _backup()
    action = _action()
    job = _job(action)

    action.start_restore(job)
    action.start_restore(job)  # a retried step

    assert action.table_status(job) == "ACTIVE"
    count = boto3.client("dynamodb").scan(TableName=job.restored_table, Select="COUNT")["Count"]
    assert count == 7


def test_reapply_copies_pitr_ttl_tags_and_autoscaling_with_its_policies() -> None:
    arn = _table()
    ddb, scaling = boto3.client("dynamodb"), boto3.client("application-autoscaling")
    ddb.update_continuous_backups(
        TableName="orders", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    ddb.update_time_to_live(
        TableName="orders",
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team", "Value": "shop"}])
    scaling.register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId="table/orders",
        ScalableDimension="dynamodb:table:ReadCapacityUnits",
        MinCapacity=5,
        MaxCapacity=50,
    )
    tracking = {
        "TargetValue": 70.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "DynamoDBReadCapacityUtilization"
        },
    }
    scaling.put_scaling_policy(
        PolicyName="orders-read",
        ServiceNamespace="dynamodb",
        ResourceId="table/orders",
        ScalableDimension="dynamodb:table:ReadCapacityUnits",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=tracking,
    )
    _backup()
    action = _action()
    job = _job(action)
    action.start_restore(job)

    done = action.reapply(job)

    copy = job.restored_table
    assert done == [
        "point-in-time recovery enabled",
        "TTL on expires_at",
        "1 tags copied",
        f"autoscaling dynamodb:table:ReadCapacityUnits 5-50 on table/{copy} (1 policies)",
    ]
    pitr = ddb.describe_continuous_backups(TableName=copy)["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert ddb.describe_time_to_live(TableName=copy)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }
    copy_arn = ddb.describe_table(TableName=copy)["Table"]["TableArn"]
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=copy_arn)["Tags"]}
    assert tags == {
        "team": "shop",
        "autoremediate:restored-from": "orders",
        "autoremediate:restore": "restore-test",
    }
    [target] = scaling.describe_scalable_targets(
        ServiceNamespace="dynamodb", ResourceIds=[f"table/{copy}"]
    )["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (5, 50)
    [policy] = [
        p
        for p in scaling.describe_scaling_policies(ServiceNamespace="dynamodb")["ScalingPolicies"]
        if p["ResourceId"] == f"table/{copy}"
    ]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 70.0


def test_verify_counts_the_copy_and_finds_a_sample_of_its_keys_in_the_source() -> None:
    _table(items=30)
    _backup()
    boto3.client("dynamodb").delete_item(TableName="orders", Key={"id": {"S": "item-3"}})
    action = _action(sample_keys=30)
    job = _job(action)
    action.start_restore(job)

    result = action.verify(job)

    assert result == {
        "restored_items": 30,
        "counted_all": True,
        "expected_items": 30,
        "source_readable": True,
        "sample": 30,
        "sample_in_source": 29,  # the item lost since the backup
    }


def test_an_empty_copy_of_a_table_that_had_items_fails_verification() -> None:
    _table(items=4)
    _backup()
    action = _action()
    job = _job(action)
    action.start_restore(job)
    ddb = boto3.client("dynamodb")
    for i in range(4):
        ddb.delete_item(TableName=job.restored_table, Key={"id": {"S": f"item-{i}"}})

    with pytest.raises(ActionError, match="is empty; the source had 4 items"):
        action.verify(job)


def test_cutover_points_the_ssm_parameter_at_the_copy() -> None:
    _table()
    _backup()
    _setting("orders")
    action = _action()
    job = _job(action)

    before, after = action.cut_over(job)

    assert (before, after) == ("orders", job.restored_table)
    value = boto3.client("ssm").get_parameter(Name=PARAMETER)["Parameter"]["Value"]
    assert value == job.restored_table


def test_cutover_sets_the_functions_variable_and_keeps_the_others() -> None:
    _table()
    _backup()
    create_function("orders-api")
    boto3.client("lambda").update_function_configuration(
        FunctionName="orders-api",
        Environment={"Variables": {"TABLE_NAME": "orders", "LOG_LEVEL": "info"}},
    )
    action = _action(cutover={"function": "orders-api", "variable": "TABLE_NAME"})
    job = _job(action)

    before, after = action.cut_over(job)

    assert (before, after) == ("orders", job.restored_table)
    variables = boto3.client("lambda").get_function_configuration(FunctionName="orders-api")[
        "Environment"
    ]["Variables"]
    assert variables == {"TABLE_NAME": job.restored_table, "LOG_LEVEL": "info"}


def test_discard_deletes_the_copy_but_never_one_in_use_nor_another_table() -> None:
    _table()
    _backup()
    _setting()
    action = _action()
    job = _job(action)
    action.start_restore(job)
    ddb = boto3.client("dynamodb")

    with pytest.raises(ActionError, match="refusing to delete orders: not a restored copy"):
        action.discard(job.model_copy(update={"restored_table": "orders"}))
    boto3.client("ssm").put_parameter(
        Name=PARAMETER, Value=job.restored_table, Type="String", Overwrite=True
    )
    assert (
        action.discard(job) == f"{job.restored_table} kept: SSM parameter {PARAMETER} points at it"
    )
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value="orders", Type="String", Overwrite=True)
    assert action.discard(job) == f"{job.restored_table} deleted"
    assert ddb.list_tables()["TableNames"] == ["orders"]
    assert action.discard(job) == f"{job.restored_table} was never created"


def test_the_flow_may_delete_only_restored_copies_and_change_only_the_named_setting() -> None:
    params = RestoreParams(cutover=CutoverSetting(parameter=PARAMETER))
    named = RestoreFromBackup.flow_permissions(TableTarget(table="orders"), params)
    unnamed = RestoreFromBackup.flow_permissions(None, params)

    def resources(permissions: Any, action: str) -> list[str]:
        return sorted(r for p in permissions if action in p.actions for r in p.resources)

    table = "arn:{partition}:dynamodb:{region}:{account}:table/"
    assert resources(named, "dynamodb:DeleteTable") == [f"{table}orders-restored-*"]
    assert resources(unnamed, "dynamodb:DeleteTable") == [f"{table}*-restored-*"]
    assert resources(named, "ssm:PutParameter") == [
        "arn:{partition}:ssm:{region}:{account}:parameter/shop/orders/table-name"
    ]
    # UpdateTable (the stream) on the copies only; never anything that changes the source.
    assert resources(named, "dynamodb:UpdateTable") == [f"{table}orders-restored-*"]
    source_writes = [
        action
        for p in named
        if f"{table}orders" in p.resources
        for action in p.actions
        if action.split(":")[1].startswith(("Update", "Delete", "Put", "BatchWrite", "Tag"))
    ]
    assert source_writes == []
    planning = {
        a for p in RestoreFromBackup.permissions(TableTarget(table="orders")) for a in p.actions
    }
    assert planning == {
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:DescribeBackup",
        "dynamodb:ListBackups",
    }


@pytest.mark.parametrize(
    "cutover",
    [
        {},
        {"parameter": "/x", "function": "f", "variable": "V"},
        {"function": "f"},
        {"variable": "V"},
    ],
)
def test_a_cutover_names_exactly_one_setting(cutover: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        RestoreParams(cutover=cutover)  # type: ignore[arg-type]


def test_a_restore_is_never_applied_or_reverted_by_the_remediator_itself() -> None:
    action = _action()

    with pytest.raises(ActionError, match="runs in the restore flow"):
        action.apply(Plan(before={}))
    with pytest.raises(ActionError, match="not reverted automatically"):
        action.revert({})


def test_a_huge_copy_is_counted_only_so_far_and_the_source_never_scanned() -> None:
    _table(items=30)
    _backup()
    action = _action(count_up_to=10)
    job = _job(action)
    action.start_restore(job)
    scanned: list[str] = []
    client("dynamodb").meta.events.register(
        "before-parameter-build.dynamodb.Scan",
        lambda params, **_: scanned.append(params["TableName"]),
    )

    result = action.verify(
        job.model_copy(update={"source": job.source.model_copy(update={"expected_items": None})})
    )

    assert result["counted_all"] is False
    assert 10 <= result["restored_items"] < 30
    assert result["expected_items"] == 30  # DynamoDB's figure for the source, not a Scan
    assert "orders" not in scanned


def test_a_point_in_time_restore_restores_the_approved_time_not_the_latest() -> None:
    _table()
    boto3.client("dynamodb").update_continuous_backups(
        TableName="orders", PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    action = _action(source="pitr_latest")
    job = _job(action)
    sent: list[dict[str, Any]] = []
    client("dynamodb").meta.events.register(
        "before-parameter-build.dynamodb.RestoreTableToPointInTime",
        lambda params, **_: sent.append(params),
    )

    action.start_restore(job)

    [params] = sent
    assert "UseLatestRestorableTime" not in params
    assert params["RestoreDateTime"] == job.source.created


def test_reapply_enables_the_stream_and_names_what_it_leaves_to_a_person() -> None:
    _table(
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        DeletionProtectionEnabled=True,
    )
    _backup()
    action = _action()
    job = _job(action)
    action.start_restore(job)

    done = action.reapply(job)

    assert "stream NEW_AND_OLD_IMAGES enabled (a new stream: consumers must move)" in done
    assert "NOT re-applied: deletion protection (turn it on after the cutover)" in done
    stream = boto3.client("dynamodb").describe_table(TableName=job.restored_table)["Table"][
        "StreamSpecification"
    ]
    assert stream == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_a_copy_dynamodb_is_still_creating_is_left_for_a_person_not_lost() -> None:
    _table()
    _backup()
    _setting()
    action = _action()
    job = _job(action)
    action.start_restore(job)

    def still_creating(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ResourceInUseException", "Message": "Table is being created"}},
            "DeleteTable",
        )

    client("dynamodb").meta.events.register("before-call.dynamodb.DeleteTable", still_creating)

    message = action.discard(job)

    assert message == (
        f"{job.restored_table} is still being restored and could not be deleted: "
        "delete it by hand once it is ACTIVE"
    )


@pytest.mark.parametrize(("held", "markers"), [(12, 2), (49, 1), (50, 0)])
def test_every_tag_of_the_source_is_copied_and_the_markers_fit_within_50(
    held: int, markers: int
) -> None:
    # DynamoDB keeps at most 50 tags per table (the simulator's fidelity rule refuses more),
    # and ListTagsOfResource answers a page at a time (moto: 10).
    arn = _table()
    ddb = boto3.client("dynamodb")
    source = {f"cost-{n:02}": str(n) for n in range(held)}
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in source.items()])
    _backup()
    action = _action()
    job = _job(action)
    action.start_restore(job)

    done = action.reapply(job)

    copy_arn = ddb.describe_table(TableName=job.restored_table)["Table"]["TableArn"]
    tags: dict[str, str] = {}
    page: dict[str, str] = {"ResourceArn": copy_arn}
    while True:
        answer = ddb.list_tags_of_resource(**page)
        tags |= {t["Key"]: t["Value"] for t in answer["Tags"]}
        if "NextToken" not in answer:
            break
        page["NextToken"] = answer["NextToken"]
    assert {k: v for k, v in tags.items() if k.startswith("cost-")} == source
    assert len(tags) == held + markers
    assert f"{held} tags copied" in done[0]
