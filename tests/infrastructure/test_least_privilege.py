"""The simulator's least-privilege check against the deployed role: it allows what the
actions declare on the resources the policy names, and nothing else."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from remediators.simulator.access import AccessChecker, call_of

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def role(deployed: Any) -> AccessChecker:
    function = boto3.client("lambda").get_function_configuration(
        FunctionName=deployed.outputs["RemediatorFunctionName"]
    )
    return AccessChecker(function["Role"])


def test_alias_calls_are_checked_on_the_function_and_configuration_reads_on_the_qualifier() -> None:
    # The permissions reference lists only the function resource type for alias calls.
    for operation in ("GetAlias", "UpdateAlias"):
        call = call_of("lambda", operation, {"FunctionName": "checkout", "Name": "live"}, ACCOUNT,
                       REGION)  # fmt: skip
        assert call.resource == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:checkout"
    params = {"FunctionName": "checkout", "Qualifier": "4"}
    read = call_of("lambda", "GetFunctionConfiguration", params, ACCOUNT, REGION)
    assert read.resource == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:checkout:4"


def _allowed(role: AccessChecker, signing: str, operation: str, **params: Any) -> bool:
    return role.allowed(call_of(signing, operation, params, ACCOUNT, REGION))


def test_actions_may_change_the_resources_the_policy_names(role: AccessChecker) -> None:
    assert _allowed(role, "dynamodb", "UpdateTable", TableName="orders")
    assert _allowed(role, "lambda", "UpdateFunctionConfiguration", FunctionName="api-handler")
    assert _allowed(role, "lambda", "UpdateAlias", FunctionName="checkout", Name="live")
    # lambda.raise_concurrency on api-handler; api.diagnose's choices on its named functions.
    assert _allowed(role, "lambda", "PutFunctionConcurrency", FunctionName="api-handler")
    assert _allowed(role, "lambda", "GetAccountSettings")
    assert _allowed(role, "lambda", "PutFunctionConcurrency", FunctionName="checkout")
    assert _allowed(role, "lambda", "GetAlias", FunctionName="checkout", Name="live")
    assert _allowed(role, "monitoring", "GetMetricData")
    # dynamodb.restore_from_backup plans in the remediator: it only reads.
    assert _allowed(role, "dynamodb", "DescribeContinuousBackups", TableName="orders")


def test_and_nothing_else(role: AccessChecker) -> None:
    assert not _allowed(role, "dynamodb", "UpdateTable", TableName="payments")
    assert not _allowed(role, "dynamodb", "DeleteTable", TableName="orders")
    assert not _allowed(role, "lambda", "UpdateFunctionConfiguration", FunctionName="billing")
    # Alias calls are authorized on the function: another function's aliases stay out of reach
    # (one of checkout's other aliases cannot be told apart by IAM).
    assert not _allowed(role, "lambda", "UpdateAlias", FunctionName="billing", Name="live")
    assert not _allowed(role, "sns", "Publish", TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:x")
    assert not _allowed(role, "lambda", "PutFunctionConcurrency", FunctionName="billing")
    assert not _allowed(role, "lambda", "DeleteFunctionConcurrency", FunctionName="billing")
    # The restore itself is the restore tasks' role's, not the remediator's.
    assert not _allowed(
        role,
        "dynamodb",
        "RestoreTableToPointInTime",
        SourceTableName="orders",
        TargetTableName="orders-restored-1",
    )
    assert not _allowed(role, "ssm", "PutParameter", Name="/shop/orders/table-name")


def test_the_restore_tasks_may_restore_and_delete_only_copies(deployed: Any) -> None:
    [tasks] = [
        f
        for f in boto3.client("lambda").list_functions()["Functions"]
        if "RestoreTasks" in f["FunctionName"]
    ]
    role = AccessChecker(tasks["Role"])
    copy = "orders-restored-20261126-180000"

    assert _allowed(
        role,
        "dynamodb",
        "RestoreTableToPointInTime",
        SourceTableName="orders",
        TargetTableName=copy,
    )
    assert _allowed(role, "dynamodb", "DeleteTable", TableName=copy)
    assert _allowed(role, "ssm", "PutParameter", Name="/shop/orders/table-name")
    assert not _allowed(role, "dynamodb", "DeleteTable", TableName="orders")
    assert not _allowed(role, "dynamodb", "UpdateTable", TableName="orders")
    assert not _allowed(
        role,
        "dynamodb",
        "RestoreTableToPointInTime",
        SourceTableName="orders",
        TargetTableName="payments",
    )
    assert not _allowed(role, "ssm", "PutParameter", Name="/shop/payments/table-name")
    assert not _allowed(role, "dynamodb", "DeleteTable", TableName="payments-restored-1")


def test_scalable_targets_only_of_dynamodb(role: AccessChecker) -> None:
    assert _allowed(
        role,
        "application-autoscaling",
        "RegisterScalableTarget",
        ServiceNamespace="dynamodb",
        ResourceId="table/orders",
    )
    assert not _allowed(
        role,
        "application-autoscaling",
        "RegisterScalableTarget",
        ServiceNamespace="ecs",
        ResourceId="service/default/web",
    )


@pytest.fixture
def targetless_stack(aws: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The stack for the built-in scenarios' policy file, whose policies without a target may
    change any table or function: only the explicit deny keeps its own out of reach."""
    from remediators.simulator.deploy import deploy, synthesize
    from remediators.simulator.local_aws import LocalAws
    from remediators.simulator.scenario import BUILT_IN_DIR

    assembly = synthesize(
        BUILT_IN_DIR / "policies" / "built-in.yaml", tmp_path_factory.mktemp("synth-built-in")
    )
    return deploy(assembly, LocalAws(endpoint_url="in-process"))


def test_the_explicit_deny_keeps_target_less_policies_off_the_stacks_own_tables(
    targetless_stack: Any,
) -> None:
    function = boto3.client("lambda").get_function_configuration(
        FunctionName=targetless_stack.outputs["RemediatorFunctionName"]
    )
    role = AccessChecker(function["Role"])
    audit = targetless_stack.outputs["AuditTableName"]

    assert _allowed(role, "dynamodb", "UpdateTable", TableName="any-team-table")  # table/*
    assert not _allowed(role, "dynamodb", "UpdateTable", TableName=audit)
    assert not _allowed(
        role, "lambda", "UpdateFunctionConfiguration", FunctionName=function["FunctionName"]
    )
    assert _allowed(role, "lambda", "UpdateFunctionConfiguration", FunctionName="any-team-function")
