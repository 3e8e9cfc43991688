"""Least privilege in use: per role of the deployed functions, each grant and whether a call
of the scenarios used it (`remediate simulate --unused-permissions`)."""

from __future__ import annotations

import boto3

from remediators.simulator.access import AccessChecker, Grant
from remediators.simulator.deploy import DeployedStack
from remediators.simulator.lambda_runtime import LambdaRuntime
from remediators.simulator.results import Report

__all__ = ["permission_use", "unused_permissions"]


def permission_use(stack: DeployedStack, runtime: LambdaRuntime) -> dict[str, dict[str, bool]]:
    """Per role of the deployed functions (by logical id; functions may share one): each grant,
    its resources named by logical id so that deployments compare, and whether a call of the
    scenario used it. Grants the Lambda service uses with the role are left out."""
    checked = runtime.access_by_function()
    logical_ids = {physical: logical for logical, physical in stack.resources.items()}
    lambda_client = boto3.client("lambda")
    grants: dict[str, set[Grant]] = {}
    used: dict[str, set[Grant]] = {}
    for logical, resource in stack.template["Resources"].items():
        name = stack.resources.get(logical)
        if resource["Type"] != "AWS::Lambda::Function" or not name:
            continue
        role_arn = lambda_client.get_function_configuration(FunctionName=name)["Role"]
        # A function not invoked in this scenario used nothing of its role.
        access = checked.get(name) or AccessChecker(role_arn)
        role = logical_ids.get(role_arn.rsplit("/", 1)[-1], role_arn)
        grants.setdefault(role, set()).update(access.grants)
        used.setdefault(role, set()).update(access.used)
    return {
        role: {
            _by_logical_id(str(grant), stack.resources): grant in used[role]
            for grant in sorted(role_grants)
            if grant.action not in _USED_BY_LAMBDA
        }
        for role, role_grants in grants.items()
    }


# The Lambda service, not the function's code, uses these with the role: its log group, and
# its dead-letter queue for asynchronous invocations that keep failing.
_USED_BY_LAMBDA = frozenset({"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"})


def _by_logical_id(text: str, physical: dict[str, str]) -> str:
    """`text` with each deployed resource's physical id replaced by `<LogicalId>`."""
    for logical, name in sorted(physical.items(), key=lambda item: -len(item[1])):
        if len(name) >= 8:  # short ids would match by accident
            text = text.replace(name, f"<{logical}>")
    return text


def unused_permissions(reports: list[Report]) -> dict[str, list[str]]:
    """Per role, what it grants that no call of any of the scenarios used."""
    granted: dict[str, set[str]] = {}
    used: dict[str, set[str]] = {}
    for report in reports:
        for function, grants in report.permissions.items():
            granted.setdefault(function, set()).update(grants)
            used.setdefault(function, set()).update(g for g, was_used in grants.items() if was_used)
    return {
        function: sorted(granted[function] - used[function])
        for function in sorted(granted)
        if granted[function] - used[function]
    }
