"""The simulator's least-privilege check against the deployed role: it allows what the
actions declare on the resources the policy names, and nothing else."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from remediators.cli.access import AccessChecker, call_of

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def role(deployed: Any) -> AccessChecker:
    function = boto3.client("lambda").get_function_configuration(
        FunctionName=deployed.outputs["RemediatorFunctionName"]
    )
    return AccessChecker(function["Role"])


def _allowed(role: AccessChecker, signing: str, operation: str, **params: Any) -> bool:
    return role.allowed(call_of(signing, operation, params, ACCOUNT, REGION))


def test_actions_may_change_the_resources_the_policy_names(role: AccessChecker) -> None:
    assert _allowed(role, "dynamodb", "UpdateTable", TableName="orders")
    assert _allowed(role, "lambda", "UpdateFunctionConfiguration", FunctionName="api-handler")
    assert _allowed(role, "lambda", "UpdateAlias", FunctionName="checkout", Name="live")


def test_and_nothing_else(role: AccessChecker) -> None:
    assert not _allowed(role, "dynamodb", "UpdateTable", TableName="payments")
    assert not _allowed(role, "dynamodb", "DeleteTable", TableName="orders")
    assert not _allowed(role, "lambda", "UpdateFunctionConfiguration", FunctionName="billing")
    assert not _allowed(role, "lambda", "UpdateAlias", FunctionName="checkout", Name="beta")
    assert not _allowed(role, "sns", "Publish", TopicArn=f"arn:aws:sns:{REGION}:{ACCOUNT}:x")


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


def test_the_explicit_deny_keeps_the_function_off_its_own_tables(
    role: AccessChecker, deployed: Any
) -> None:
    audit = deployed.outputs["AuditTableName"]

    assert _allowed(role, "dynamodb", "PutItem", TableName=audit)
    assert not _allowed(role, "dynamodb", "UpdateTable", TableName=audit)
