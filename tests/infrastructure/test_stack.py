"""What the synthesized template must contain (synthesized once per session from
remediation.yaml): the rule pattern, the function, least-privilege IAM, DLQs, cdk-nag clean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from stacks.names import ALARM_HANDLER
from tests.conftest import ROOT

KINDS = ("alarm", "verification", "flow_ended", "expiry")
MUTATING_VERBS = (
    "Update",
    "Put",
    "Register",
    "Create",
    "Delete",
    "Set",
    "Modify",
    "Restore",
    "Send",
    "Publish",
    "Start",
    "Stop",
    "Tag",
    "Untag",
)
# Mutating APIs that accept no resource ARN, so `*` is the only resource IAM allows for them.
NO_RESOURCE_ARN = {
    "logs:CreateLogDelivery": "Step Functions log delivery (vended logs) has no resource type",
    "logs:UpdateLogDelivery": "as CreateLogDelivery",
    "logs:DeleteLogDelivery": "as CreateLogDelivery",
    "logs:PutResourcePolicy": "the account's log resource policies have no ARN",
    "xray:PutTraceSegments": "X-Ray trace writes have no resource type",
    "xray:PutTelemetryRecords": "as PutTraceSegments",
}
# Mutating APIs granted on `*` because AWS checks them there for another service.
CHECKED_ON_STAR = {
    "cloudwatch:PutMetricAlarm": "Application Auto Scaling probes it 'without any parameters' "
    "(no alarm ARN) before RegisterScalableTarget/PutScalingPolicy (its permission validation)",
    "cloudwatch:DeleteAlarms": "as PutMetricAlarm",
}
# APIs named like a change that change nothing.
NOT_MUTATING = {"logs:StartQuery": "runs a read-only Logs Insights query"}


@pytest.fixture(scope="module")
def template_json(assembly: Path) -> dict[str, Any]:
    return dict(json.loads((assembly / "Autoremediate.template.json").read_text()))


@pytest.fixture(scope="module")
def template(template_json: dict[str, Any]) -> Template:
    return Template.from_json(template_json)


def _of_type(template_json: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template_json["Resources"].items() if r["Type"] == kind}


def test_one_rule_matches_exactly_the_policy_alarms_entering_alarm_or_ok(
    template_json: dict[str, Any],
) -> None:
    [rule] = [
        rule
        for rule in _of_type(template_json, "AWS::Events::Rule").values()
        if rule["Properties"].get("EventPattern", {}).get("source") == ["aws.cloudwatch"]
    ]

    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {
            "alarmName": [
                {"prefix": "orders-ddb-throttle"},
                "sessions-throttling-dynamodb-throttling",
                "api-handler-timeouts",
                "api-handler-throttles",
                "checkout-live-errors",
                "shop-abusers-api-5xx",
                "shop-api-errors",
                "orders-integrity-errors",
            ],
            "state": {"value": ["ALARM", "OK"]},
        },
    }


def test_the_rule_targets_the_function_with_retries_and_a_dead_letter_queue(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "Targets": [
                {
                    "Arn": {"Fn::GetAtt": [Match.string_like_regexp("RemediatorFunction"), "Arn"]},
                    "DeadLetterConfig": {
                        "Arn": {
                            "Fn::GetAtt": [Match.string_like_regexp("TriggerDeadLetters"), "Arn"]
                        }
                    },
                    "RetryPolicy": {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 7200},
                    "Id": Match.any_value(),
                }
            ]
        },
    )


def test_the_function_runs_our_handler_on_the_latest_python_with_the_powertools_layer(
    template: Template, template_json: dict[str, Any]
) -> None:
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": ALARM_HANDLER,
            "Runtime": "python3.14",
            "Architectures": ["arm64"],
            "DeadLetterConfig": {"TargetArn": Match.any_value()},
            "Layers": [{"Ref": Match.string_like_regexp("powertools")}],
            "Environment": {
                "Variables": Match.object_like(
                    {"AUDIT_TABLE_NAME": {"Ref": Match.string_like_regexp("AuditTable")}}
                )
            },
        },
    )
    layer_parameters = [
        p for p in template_json["Parameters"].values() if "powertools" in p.get("Default", "")
    ]
    assert layer_parameters == [
        {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": "/aws/service/powertools/python/arm64/python3.14/latest",
        }
    ]
    template.has_resource_properties("AWS::Lambda::EventInvokeConfig", {"MaximumRetryAttempts": 2})


def test_every_function_skips_pydantics_plugin_scan(template_json: dict[str, Any]) -> None:
    functions = {
        name: resource["Properties"]
        for name, resource in template_json["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
        and "Handler" in resource["Properties"]
        and resource["Properties"]["Handler"].startswith("remediators.")
    }

    assert len(functions) >= 5
    for name, properties in functions.items():
        variables = properties["Environment"]["Variables"]
        assert variables.get("PYDANTIC_DISABLE_PLUGINS") == "__all__", name


def test_the_code_asset_holds_our_code_and_the_validated_policy_only(assembly: Path) -> None:
    [asset] = [p for p in assembly.iterdir() if p.name.startswith("asset.")]
    top = sorted(p.name for p in asset.iterdir())
    packages = sorted(p.name for p in (asset / "remediators").iterdir() if p.is_dir())

    assert top == ["policy.json", "remediators"]
    assert packages == ["actions", "core", "flows", "handlers"]  # no CLI, no simulator
    policy = json.loads((asset / "policy.json").read_text())
    assert [p["name"] for p in policy["policies"]] == [
        "orders-throttling",
        "sessions-throttling",
        "api-timeouts",
        "api-throttles",
        "checkout-rollback",
        "shop-abusers",
        "shop-errors",
        "orders-restore",
    ]


def test_the_audit_table_has_pitr_ttl_and_its_two_indexes(template: Template) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "event_id", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
            "GlobalSecondaryIndexes": [
                Match.object_like({"IndexName": "by_target"}),
                Match.object_like({"IndexName": "by_alarm"}),
            ],
            "SSESpecification": {"SSEEnabled": True},
        },
    )
    template.has_resource("AWS::DynamoDB::Table", {"DeletionPolicy": "Retain"})


def test_notifications_go_to_the_channel_topic_with_its_email_subscription(
    template: Template,
) -> None:
    template.resource_count_is("AWS::SNS::Topic", 1)
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "oncall@example.com"}
    )


def _statements(template_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        for policy in _of_type(template_json, kind).values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _statements_by_role(template_json: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The statements of the policies attached to each role (by the role's logical id)."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in _of_type(template_json, kind).values():
            for role in policy["Properties"].get("Roles", []):
                by_role.setdefault(role["Ref"], []).extend(
                    policy["Properties"]["PolicyDocument"]["Statement"]
                )
    return by_role


def _function_roles(template_json: dict[str, Any]) -> dict[str, str]:
    """Each function's handler, and the logical id of its role."""
    return {
        function["Properties"]["Handler"]: function["Properties"]["Role"]["Fn::GetAtt"][0]
        for function in _of_type(template_json, "AWS::Lambda::Function").values()
    }


def test_each_event_kind_has_its_own_function_and_role(template_json: dict[str, Any]) -> None:
    roles = _function_roles(template_json)
    kinds = [f"remediators.handlers.{kind}.lambda_handler" for kind in KINDS]

    assert set(kinds) <= roles.keys()
    assert len({roles[kind] for kind in kinds}) == len(kinds)


def test_the_verification_and_flow_ended_functions_change_no_resource(
    template_json: dict[str, Any],
) -> None:
    roles, by_role = _function_roles(template_json), _statements_by_role(template_json)
    allowed = {
        "verification": {
            "cloudwatch:DescribeAlarms",
            "dynamodb:DeleteItem",  # the idempotency table's own records
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "sns:Publish",
            "kms:Decrypt",  # a publisher's, on the topics' key
            "kms:GenerateDataKey*",
            "sqs:SendMessage",  # Lambda's, to the dead-letter queue
        },
        "flow_ended": {
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "sns:Publish",
            "kms:Decrypt",
            "kms:GenerateDataKey*",
            "sqs:SendMessage",
        },
    }
    for kind, actions in allowed.items():
        statements = by_role[roles[f"remediators.handlers.{kind}.lambda_handler"]]
        granted = {a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"])}
        assert granted == actions, kind
        tables = {
            json.dumps(r)
            for s in statements
            if any(a.startswith("dynamodb:") for a in _as_list(s["Action"]))
            for r in _as_list(s["Resource"])
        }
        # The audit table and the idempotency table, nothing else.
        assert all("AuditTable" in t or "GuardrailsIdempotency" in t for t in tables), tables


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _mutating(statement: dict[str, Any]) -> list[str]:
    return [
        action
        for action in _as_list(statement["Action"])
        if action.split(":")[1].startswith(MUTATING_VERBS)
        and action not in NO_RESOURCE_ARN
        and action not in CHECKED_ON_STAR
        and action not in NOT_MUTATING
    ]


def test_no_mutating_iam_action_is_allowed_on_star(template_json: dict[str, Any]) -> None:
    offenders = [
        statement
        for statement in _statements(template_json)
        if "*" in _as_list(statement["Resource"]) and _mutating(statement)
    ]

    assert offenders == []


def _whole_collection(resource: Any) -> bool:
    """`*`, or an ARN of every resource of a kind (`table/*`, `function:*`, `ipset/*`, ...):
    not a name prefix, and not the one named set whose id the action looks up
    (`ipset/NAME/*`)."""
    text = json.dumps(resource)
    kinds = "table|function|ipset|scalable-target|log-group|secret|stateMachine|parameter"
    return resource == "*" or re.search(rf'[:/]({kinds})[/:]\*"\]\]\}}$', text) is not None


def test_mutating_actions_on_whole_collections_are_narrowed_by_a_condition(
    template_json: dict[str, Any],
) -> None:
    unconditioned = [
        statement
        for statement in _statements(template_json)
        if statement["Effect"] == "Allow"
        and "Condition" not in statement
        and any(_whole_collection(resource) for resource in _as_list(statement["Resource"]))
        and _mutating(statement)
    ]

    assert unconditioned == []


def test_register_scalable_target_is_limited_to_dynamodb(template_json: dict[str, Any]) -> None:
    statements = [
        s
        for s in _statements(template_json)
        if "application-autoscaling:RegisterScalableTarget" in _as_list(s["Action"])
    ]

    # The remediator's (scale_capacity) and the restore flow's (re-applied autoscaling).
    assert len(statements) == 2
    for statement in statements:
        assert statement["Condition"] == {
            "StringEquals": {"application-autoscaling:service-namespace": "dynamodb"}
        }


def test_the_function_may_never_change_its_own_tables_or_itself(
    template_json: dict[str, Any],
) -> None:
    denies = [s for s in _statements(template_json) if s["Effect"] == "Deny"]
    by_action = {
        action: sorted(r["Fn::GetAtt"][0][:10] for r in _as_list(deny["Resource"]))
        for deny in denies
        for action in _as_list(deny["Action"])
    }

    own_tables = ["ApprovalAp", "AuditTable", "ExpiryBloc", "Guardrails", "Guardrails"]
    assert by_action["dynamodb:UpdateTable"] == own_tables
    assert by_action["dynamodb:DeleteTable"] == own_tables
    functions = sorted(
        re.sub(r"[0-9A-F]{8}$", "", r["Fn::GetAtt"][0])
        for deny in denies
        if "lambda:UpdateFunctionConfiguration" in _as_list(deny["Action"])
        for r in _as_list(deny["Resource"])
    )
    # The remediator, each event kind's function, the approval tasks (the remediator's role),
    # the approval endpoint, the restore tasks.
    assert functions == [
        "RemediatorEndpoint",
        "RemediatorExpiry",
        "RemediatorFlowEnded",
        "RemediatorFunction",
        "RemediatorRestoreTasks",
        "RemediatorTasks",
        "RemediatorVerifier",
    ]


def test_update_function_configuration_is_granted_on_the_named_functions_only(
    template_json: dict[str, Any],
) -> None:
    resources = [
        resource
        for s in _statements(template_json)
        if s["Effect"] == "Allow" and "lambda:UpdateFunctionConfiguration" in _as_list(s["Action"])
        for resource in _as_list(s["Resource"])
    ]

    # api-handler's timeout policy, and the $LATEST that api.diagnose's raise_timeout through
    # checkout:live publishes a version from (remediation.yaml).
    assert sorted(r["Fn::Join"][1][-1] for r in resources) == [
        ":function:api-handler",
        ":function:checkout",
    ]


def test_the_kill_switch_parameter_is_created_enabled(template: Template) -> None:
    template.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": "/autoremediate/Autoremediate/actions", "Value": "enabled", "Type": "String"},
    )


def test_lock_and_idempotency_tables_expire_their_items(template: Template) -> None:
    for key, ttl in (("lock_key", "expires_at"), ("id", "expiration")):
        template.has_resource_properties(
            "AWS::DynamoDB::Table",
            {
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                "TimeToLiveSpecification": {"AttributeName": ttl, "Enabled": True},
            },
        )


def test_the_function_knows_its_guardrail_state(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "LOCKS_TABLE_NAME": {"Ref": Match.string_like_regexp("GuardrailsLocks")},
                        "IDEMPOTENCY_TABLE_NAME": {
                            "Ref": Match.string_like_regexp("GuardrailsIdempotency")
                        },
                        "KILL_SWITCH_PARAMETER": {
                            "Ref": Match.string_like_regexp("GuardrailsKillSwitch")
                        },
                    }
                )
            }
        },
    )


def test_autoremediate_watches_itself_with_alarms_no_policy_can_select(
    template_json: dict[str, Any], template: Template
) -> None:
    alarms = [
        a
        for a in _of_type(template_json, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"].startswith("autoremediate-")
    ]
    names = sorted(a["Properties"]["AlarmName"] for a in alarms)

    assert names == [
        "autoremediate-Autoremediate-dead-letters-0",
        "autoremediate-Autoremediate-dead-letters-1",
        "autoremediate-Autoremediate-expiry-errors",
        "autoremediate-Autoremediate-flow-ended-errors",
        "autoremediate-Autoremediate-remediator-errors",
        "autoremediate-Autoremediate-verification-errors",
    ]
    assert all(a["Properties"]["AlarmActions"] for a in alarms)
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_update_table_is_granted_on_exactly_the_tables_the_policy_names(
    template_json: dict[str, Any],
) -> None:
    tables = sorted(
        resource["Fn::Join"][1][-1]
        for s in _statements(template_json)
        if s["Effect"] == "Allow" and "dynamodb:UpdateTable" in _as_list(s["Action"])
        for resource in _as_list(s["Resource"])
    )

    # scale_capacity's tables, and the restore's copies of orders (their stream).
    assert tables == [":table/orders", ":table/orders-restored-*", ":table/sessions"]


def test_cdk_nag_finds_nothing_unacknowledged_and_every_acknowledgment_has_a_reason(
    assembly: Path,
) -> None:
    report = json.loads((assembly / "validation-report.json").read_text())
    [nag] = report["pluginReports"]

    assert nag["pluginName"] == "AwsSolutions"
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    assert all(len(v["reason"]) > 20 for v in nag["suppressedViolations"])


def test_a_new_cdk_nag_finding_fails_synth(tmp_path: Path) -> None:
    from aws_cdk import aws_sqs as sqs

    from stacks.build import build_app

    app = build_app(ROOT / "remediation.yaml", outdir=str(tmp_path))
    stack = app.node.find_child("Autoremediate")
    sqs.Queue(stack, "PlainQueue")  # no DLQ, no TLS enforcement

    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    assert "Autoremediate/PlainQueue/Resource" in str(failure.value)
    assert "AwsSolutions-SQS4" in str(failure.value)


def test_cdk_synth_cli_works_offline_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(tmp_path / "out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "Autoremediate.template.json").exists()


def test_a_bad_policy_file_fails_synth_naming_the_policy_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "policies:\n  - name: orders\n    alarm: {name: a}\n"
        "    action: dynamodb.scale_capacity\n    params: {factor: 100}\n"
    )
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "app.py"],
        cwd=ROOT,
        env={
            **env,
            "CDK_CONTEXT_JSON": json.dumps({"policy": str(bad)}),
            "CDK_OUTDIR": str(tmp_path / "out"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 1
    assert "policy 'orders' (policies[0]) field params.factor" in result.stderr
    assert "Traceback" not in result.stderr


def test_verification_schedules_are_scoped_and_the_scheduler_can_only_invoke_the_function(
    template_json: dict[str, Any], template: Template
) -> None:
    statements = _statements(template_json)
    [create] = [s for s in statements if s["Action"] == "scheduler:CreateSchedule"]
    [pass_role] = [s for s in statements if s["Action"] == "iam:PassRole"]
    [invoke] = [
        s
        for s in statements
        if s["Action"] == "lambda:InvokeFunction" and not isinstance(s["Resource"], list)
    ]
    [describe] = [s for s in statements if s["Action"] == "cloudwatch:DescribeAlarms"]

    assert create["Resource"]["Fn::Join"][1][-1] == ":schedule/default/autoremediate-verify-*"
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }
    assert invoke["Resource"]["Fn::GetAtt"][0].startswith("RemediatorVerifier")
    by_role = _statements_by_role(template_json)
    [remediator_role] = [r for r in by_role if r.startswith("RemediatorRole")]
    [verifier_role] = [r for r in by_role if r.startswith("RemediatorVerifierRole")]
    assert create in by_role[remediator_role]
    assert pass_role in by_role[remediator_role]
    assert describe in by_role[verifier_role]
    # Composite alarms are returned only to a DescribeAlarms permission on * (AWS).
    assert describe["Resource"] == "*"
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "scheduler.amazonaws.com"},
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
                            },
                        }
                    )
                ]
            }
        },
    )


def test_a_circular_dependency_fails_synth_not_deploy(tmp_path: Path) -> None:
    from aws_cdk import aws_iam as iam

    from stacks.build import build_app

    app = build_app(ROOT / "remediation.yaml", outdir=str(tmp_path))
    stack = app.node.find_child("Autoremediate")
    remediator = stack.node.find_child("Remediator")
    function = remediator.node.find_child("Function")
    remediator.node.find_child("Role").add_to_policy(
        iam.PolicyStatement(actions=["lambda:GetFunction"], resources=[function.function_arn])
    )

    with pytest.raises(RuntimeError, match="Circular"):
        app.synth()


def test_alias_updates_are_granted_on_the_named_function_and_alias_only(
    template_json: dict[str, Any],
) -> None:
    [statement] = [
        s
        for s in _statements(template_json)
        if s["Effect"] == "Allow" and "lambda:UpdateAlias" in _as_list(s["Action"])
    ]

    assert sorted(r["Fn::Join"][1][-1] for r in statement["Resource"]) == [
        ":function:checkout",
        ":function:checkout:live",
    ]


def _cfn_lint(template: Path) -> subprocess.CompletedProcess[str]:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    return subprocess.run(
        [str(cfn_lint), str(template)], capture_output=True, text=True, check=False, timeout=300
    )


def test_cfn_lint_finds_no_error_in_the_synthesized_template(assembly: Path) -> None:
    result = _cfn_lint(assembly / "Autoremediate.template.json")

    assert result.returncode & 2 == 0, result.stdout  # bit 2: errors (4: warnings)


def test_cfn_lint_finds_no_error_with_target_less_policies(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from remediators.simulator.deploy import synthesize
    from remediators.simulator.scenario import BUILT_IN_DIR

    built_in = synthesize(
        BUILT_IN_DIR / "policies" / "built-in.yaml", tmp_path_factory.mktemp("synth-built-in")
    )

    result = _cfn_lint(built_in / "Autoremediate.template.json")

    assert result.returncode & 2 == 0, result.stdout


def test_a_preset_policy_gets_its_alarm_named_as_its_rule_expects(
    template_json: dict[str, Any],
) -> None:
    [alarm] = [
        a["Properties"]
        for a in _of_type(template_json, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == "sessions-throttling-dynamodb-throttling"
    ]

    assert (alarm["Threshold"], alarm["EvaluationPeriods"]) == (10, 2)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    [expression] = [m for m in alarm["Metrics"] if "Expression" in m]
    assert expression["Expression"] == "reads + writes"
    throttles = sorted(
        m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m
    )
    assert throttles == ["ReadThrottleEvents", "WriteThrottleEvents"]
    assert all(
        m["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "TableName", "Value": "sessions"}]
        and m["MetricStat"]["Period"] == 60
        for m in alarm["Metrics"]
        if "MetricStat" in m
    )


def test_the_lambda_presets_alarm_on_duration_near_the_timeout_and_on_the_error_rate(
    tmp_path: Path,
) -> None:
    import yaml

    from remediators.simulator.deploy import synthesize
    from remediators.simulator.scenario import BUILT_IN_DIR

    scenario = yaml.safe_load((BUILT_IN_DIR / "lambda-preset-alarms.yaml").read_text())
    policy = tmp_path / "presets.yaml"
    policy.write_text(
        yaml.safe_dump({k: scenario[k] for k in ("defaults", "notifications", "policies")})
    )
    template = json.loads(
        (synthesize(policy, tmp_path / "synth") / "Autoremediate.template.json").read_text()
    )
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in _of_type(template, "AWS::CloudWatch::Alarm").values()
    }

    timeouts = alarms["billing-timeouts-lambda-timeouts"]
    assert (timeouts["MetricName"], timeouts["Namespace"]) == ("Duration", "AWS/Lambda")
    assert (timeouts["Statistic"], timeouts["Threshold"], timeouts["Period"]) == (
        "Maximum",
        2400,
        60,
    )
    assert timeouts["Dimensions"] == [{"Name": "FunctionName", "Value": "billing"}]
    errors = alarms["search-errors-error-rate"]
    [rate] = [m for m in errors["Metrics"] if "Expression" in m]
    assert rate["Expression"] == "100 * errors / invocations"
    assert (errors["Threshold"], errors["ComparisonOperator"]) == (
        5,
        "GreaterThanOrEqualToThreshold",
    )
    sums = {
        m["Id"]: (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Stat"])
        for m in errors["Metrics"]
        if "MetricStat" in m
    }
    assert sums == {"errors": ("Errors", "Sum"), "invocations": ("Invocations", "Sum")}


def test_flow_executions_that_end_without_success_go_to_the_flow_ended_function(
    template_json: dict[str, Any],
) -> None:
    [rule] = [
        rule["Properties"]
        for rule in _of_type(template_json, "AWS::Events::Rule").values()
        if rule["Properties"].get("EventPattern", {}).get("source") == ["aws.states"]
    ]

    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["status"] == ["FAILED", "TIMED_OUT", "ABORTED"]
    machines = sorted(arn["Fn::Join"][1][-1] for arn in pattern["detail"]["stateMachineArn"])
    assert machines == [
        ":stateMachine:autoremediate-Autoremediate-approval",
        ":stateMachine:autoremediate-Autoremediate-restore",
    ]
    [target] = rule["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("RemediatorFlowEnded")
    assert "DeadLetterConfig" in target
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 4


def test_the_roles_that_register_scalable_targets_may_manage_their_alarms_on_star(
    template_json: dict[str, Any],
) -> None:
    # Application Auto Scaling probes these as the caller, without an alarm (no alarm ARN),
    # and refuses RegisterScalableTarget/PutScalingPolicy if they are denied.
    wanted = {"cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"}
    by_role = _statements_by_role(template_json)
    registering = [
        role
        for role, statements in by_role.items()
        if any(
            "application-autoscaling:RegisterScalableTarget" in _as_list(s["Action"])
            for s in statements
        )
    ]

    # The remediator's (shared by the approval tasks) and the restore tasks'.
    assert sorted(re.sub(r"[0-9A-F]{8}$", "", r) for r in registering) == [
        "RemediatorRole",
        "RestoreTasksRole",
    ]
    for role in registering:
        on_star = {
            action
            for s in by_role[role]
            if s["Effect"] == "Allow" and s["Resource"] == "*"
            for action in _as_list(s["Action"])
        }
        assert wanted <= on_star, role


def _endpoint(template_json: dict[str, Any]) -> dict[str, Any]:
    [endpoint] = [
        function["Properties"]
        for function in _of_type(template_json, "AWS::Lambda::Function").values()
        if function["Properties"]["Handler"]
        == "remediators.handlers.approval_endpoint.lambda_handler"
    ]
    return endpoint


def test_the_public_approval_endpoint_has_a_small_reserved_concurrency(
    template_json: dict[str, Any],
) -> None:
    # A flood of requests to its URL takes at most this of the account's concurrency.
    assert _endpoint(template_json)["ReservedConcurrentExecutions"] == 5


def test_an_account_with_a_small_quota_can_deploy_without_the_reservation() -> None:
    from aws_cdk import App

    from remediators.core.policy import load_policy_file
    from stacks.build import build_stack

    app = App(context={"approvalEndpointConcurrency": "0"})
    stack = build_stack(app, load_policy_file(ROOT / "remediation.yaml"))

    template = Template.from_stack(stack).to_json()
    assert "ReservedConcurrentExecutions" not in _endpoint(template)


def test_the_topics_key_lets_cloudwatch_publish_the_stack_s_own_alarms(
    template_json: dict[str, Any],
) -> None:
    # CloudWatch cannot use the AWS managed key alias/aws/sns: alarms to such a topic never
    # notify. The topics use a key of the stack's own whose policy lets CloudWatch use it.
    [(key_id, key)] = _of_type(template_json, "AWS::KMS::Key").items()
    topics = _of_type(template_json, "AWS::SNS::Topic").values()
    assert topics
    for topic in topics:
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    [cloudwatch] = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert (cloudwatch["Effect"], sorted(cloudwatch["Action"])) == (
        "Allow",
        ["kms:Decrypt", "kms:GenerateDataKey*"],
    )
    assert key["Properties"]["EnableKeyRotation"] is True
    # And every function that publishes may use the key as a publisher must.
    roles, by_role = _function_roles(template_json), _statements_by_role(template_json)
    for kind in KINDS:
        statements = by_role[roles[f"remediators.handlers.{kind}.lambda_handler"]]
        assert any(
            set(_as_list(s["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
            and s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]}
            for s in statements
        ), kind
