"""Least privilege, checked while the simulator runs: each AWS call a deployed function makes,
with the resource it touches, against that function's deployed role (explicit Deny first,
then Allow; `*` and `?` as IAM matches them). moto enforces IAM actions but not resources,
so the simulator checks both, and a call the role would not allow fails the scenario."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import boto3

__all__ = ["AccessChecker", "Call", "Grant", "call_of", "calls_of"]

# IAM prefixes that differ from the API's signing name.
_IAM_PREFIX = {"monitoring": "cloudwatch"}


@dataclass(frozen=True)
class Call:
    """An IAM action on a resource, with the condition keys the request sets."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    # Calls that touch two resources (a restore: the backup and the new table) need both.
    also: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}"


@dataclass(frozen=True, order=True)
class Grant:
    """One action on one resource pattern that an Allow statement of a role grants."""

    action: str
    resource: str

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}"


# A transaction's parts and the IAM actions that govern them: "Permissions for Put, Update,
# Delete, and Get actions are governed by the permissions used for the underlying PutItem,
# UpdateItem, DeleteItem, and GetItem operations. For the ConditionCheck action, you can use
# the dynamodb:ConditionCheckItem permission"
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
_TRANSACTION_PARTS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def calls_of(
    signing_name: str, operation: str, params: dict[str, Any], account: str, region: str
) -> list[Call]:
    """The IAM checks of an API call: one, or one per part of a DynamoDB transaction."""
    if signing_name == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        return [
            call_of("dynamodb", _TRANSACTION_PARTS[part], request, account, region)
            for item in params.get("TransactItems", [])
            for part, request in item.items()
        ]
    return [call_of(signing_name, operation, params, account, region)]


def call_of(  # noqa: PLR0911, PLR0912 (one branch and return per service)
    signing_name: str, operation: str, params: dict[str, Any], account: str, region: str
) -> Call:
    """The IAM action and resource ARN of an API call (for the services actions use)."""
    service = _IAM_PREFIX.get(signing_name, signing_name)
    action = f"{service}:{operation}"
    arn = f"arn:aws:{service}:{region}:{account}:"
    if service == "dynamodb" and operation == "RestoreTableFromBackup":
        return Call(
            action, str(params["BackupArn"]), also=(f"{arn}table/{params['TargetTableName']}",)
        )
    if service == "dynamodb" and operation == "RestoreTableToPointInTime":
        source = f"{arn}table/{params['SourceTableName']}"
        return Call(action, source, also=(f"{arn}table/{params['TargetTableName']}",))
    if service == "dynamodb" and ("BackupArn" in params or "ResourceArn" in params):
        return Call(action, str(params.get("BackupArn") or params["ResourceArn"]))
    if service == "dynamodb" and "TableName" in params:
        resource = f"{arn}table/{params['TableName']}"
        if params.get("IndexName"):
            resource += f"/index/{params['IndexName']}"
        return Call(action, resource)
    if service == "lambda" and "FunctionName" in params:
        function = str(params["FunctionName"]).rsplit(":function:", 1)[-1]
        # Alias calls are authorized on the function itself (the permissions reference lists
        # only the function resource type for them); a call on a version's or an alias's
        # configuration, on that qualified ARN.
        if operation not in ("GetAlias", "UpdateAlias") and params.get("Qualifier"):
            function += f":{params['Qualifier']}"
        return Call(action, f"{arn}function:{function}")
    if service == "ssm" and "Name" in params:
        return Call(action, f"{arn}parameter{params['Name']}")
    if service == "sns" and "TopicArn" in params:
        return Call(action, str(params["TopicArn"]))
    if service == "scheduler" and "Name" in params:
        group = params.get("GroupName", "default")
        return Call(action, f"{arn}schedule/{group}/{params['Name']}")
    if service == "cloudwatch" and params.get("AlarmNames"):
        return Call(action, f"{arn}alarm:{params['AlarmNames'][0]}")
    if service == "secretsmanager" and "SecretId" in params:
        secret = str(params["SecretId"])
        # A secret's ARN is its name and six characters Secrets Manager adds.
        return Call(action, secret if secret.startswith("arn:") else f"{arn}secret:{secret}-AbCdEf")
    if service == "states" and "stateMachineArn" in params:
        return Call(action, str(params["stateMachineArn"]))
    if service == "states" and "taskToken" in params:
        return Call(action, _state_machine_waiting_for(str(params["taskToken"]), account, region))
    if service == "wafv2" and "Id" in params:
        scope = "global" if params.get("Scope") == "CLOUDFRONT" else "regional"
        location = "us-east-1" if scope == "global" else region
        name, set_id = params["Name"], params["Id"]
        return Call(action, f"arn:aws:wafv2:{location}:{account}:{scope}/ipset/{name}/{set_id}")
    if service == "logs" and "logGroupName" in params:
        return Call(action, f"{arn}log-group:{params['logGroupName']}:*")
    if service == "application-autoscaling":
        namespace = str(params.get("ServiceNamespace", ""))
        context = (("application-autoscaling:service-namespace", namespace),)
        if operation == "RegisterScalableTarget":
            # A scalable target's ARN ends in an id AWS makes up; any id stands for it.
            digest = hashlib.sha256(str(params.get("ResourceId")).encode()).hexdigest()[:32]
            return Call(action, f"{arn}scalable-target/{digest}", context)
        return Call(action, "*", context)
    return Call(action, "*")


def _state_machine_waiting_for(token: str, account: str, region: str) -> str:
    """The state machine whose execution waits for `token` (a task token names no resource;
    IAM checks the call against that state machine). Looked up in moto's interpreter."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[account][region]
    for machine in backend.state_machines:
        for execution in machine.executions:
            worker = getattr(execution, "exec_worker", None)
            if worker is not None and worker.env.callback_pool_manager.get(token) is not None:
                return str(machine.arn)
    return "*"  # no execution waits for it: the call fails anyway


class AccessChecker:
    """The identity policies of one role, as deployed."""

    def __init__(self, role_arn: str) -> None:
        iam = boto3.client("iam")
        role = role_arn.rsplit("/", 1)[-1]
        self.statements: list[dict[str, Any]] = []
        for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            self.statements += _statements(document)
        for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(
                PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
            )
            self.statements += _statements(version["PolicyVersion"]["Document"])
        # Everything the role allows, and what of it the calls checked so far used.
        self.grants = {
            Grant(action, resource)
            for statement in self.statements
            if statement["Effect"] == "Allow"
            for action in _listed(statement.get("Action", []))
            for resource in _listed(statement.get("Resource", []))
        }
        self.used: set[Grant] = set()

    def allowed(self, call: Call) -> bool:
        """Whether the role allows the call, on each resource it touches: no Deny matches and
        some Allow does. The grants that allowed it count as used."""
        allowing: set[Grant] = set()
        for resource in (call.resource, *call.also):
            one = Call(call.action, resource, call.context)
            matching = [s for s in self.statements if _matches(s, one)]
            if any(s["Effect"] == "Deny" for s in matching):
                return False
            allows = [s for s in matching if s["Effect"] == "Allow"]
            if not allows:
                return False
            allowing |= {
                Grant(action, pattern)
                for statement in allows
                for action in _listed(statement["Action"])
                if fnmatch.fnmatchcase(call.action.lower(), action.lower())
                for pattern in _listed(statement["Resource"])
                if fnmatch.fnmatchcase(resource, pattern)
            }
        self.used |= allowing
        return True


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):  # some SDKs return it URL-encoded
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(statement: dict[str, Any], call: Call) -> bool:
    actions = _listed(statement.get("Action", []))
    resources = _listed(statement.get("Resource", []))
    if not any(fnmatch.fnmatchcase(call.action.lower(), a.lower()) for a in actions):
        return False
    if not any(fnmatch.fnmatchcase(call.resource, r) for r in resources):
        return False
    context = dict(call.context)
    for operator, conditions in statement.get("Condition", {}).items():
        for key, expected in conditions.items():
            if operator != "StringEquals" or context.get(key) not in _listed(expected):
                return False  # a condition this checker cannot establish does not hold
    return True
