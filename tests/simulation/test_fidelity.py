"""Each fidelity rule: bare moto accepts the case, the rule refuses it as AWS does (the error
code and message botocore raises), and what AWS allows still goes through."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.simulator import fidelity
from remediators.simulator.access import AccessChecker, Grant
from remediators.simulator.fidelity.dynamodb_table_updating import UPDATING_FOR

pytestmark = pytest.mark.usefixtures("aws")


def _bare(region: str = "us-east-1") -> boto3.Session:
    """A session as moto alone answers it."""
    return boto3.Session(region_name=region)


def _strict(region: str = "us-east-1", checker: AccessChecker | None = None) -> boto3.Session:
    """A session with the rules, calling as `checker`'s role (None: not a function)."""
    session = boto3.Session(region_name=region)
    fidelity.install(session, caller=lambda: checker)
    return session


def test_every_rule_names_the_aws_page_it_follows() -> None:
    assert len({rule.name for rule in fidelity.RULES}) == len(fidelity.RULES)
    for rule in fidelity.RULES:
        assert rule.doc.startswith("https://docs.aws.amazon.com/"), rule.name
        module = __import__(type(rule).__module__, fromlist=["__doc__"])
        assert rule.doc in (module.__doc__ or ""), rule.name


# --- WAFv2: CloudFront scope only at us-east-1 ----------------------------------------------


def _cloudfront_ip_set(session: boto3.Session, name: str) -> dict[str, Any]:
    return dict(
        session.client("wafv2").create_ip_set(
            Name=name, Scope="CLOUDFRONT", IPAddressVersion="IPV4", Addresses=[]
        )["Summary"]
    )


def test_bare_moto_answers_a_cloudfront_call_from_another_region() -> None:
    assert _cloudfront_ip_set(_bare("eu-west-1"), "edge-blocks")["Name"] == "edge-blocks"


def test_a_cloudfront_call_from_another_region_is_refused_as_waf_refuses_it() -> None:
    with pytest.raises(ClientError) as refused:
        _cloudfront_ip_set(_strict("eu-west-1"), "edge-blocks")

    error = refused.value.response["Error"]
    assert error["Code"] == "WAFInvalidParameterException"
    assert error["Message"] == (
        "Error reason: The scope is not valid., field: SCOPE_VALUE, parameter: CLOUDFRONT"
    )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert type(refused.value).__name__ == "WAFInvalidParameterException"  # botocore's modeled


def test_cloudfront_calls_at_us_east_1_and_regional_calls_anywhere_go_through() -> None:
    assert _cloudfront_ip_set(_strict("us-east-1"), "edge-blocks")["Name"] == "edge-blocks"
    regional = (
        _strict("eu-west-1")
        .client("wafv2")
        .create_ip_set(Name="api-blocks", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=[])
    )
    assert regional["Summary"]["Name"] == "api-blocks"


# --- Application Auto Scaling checks the caller's CloudWatch permissions --------------------


def _role(name: str, actions: list[str]) -> AccessChecker:
    iam = boto3.client("iam")
    arn = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="grants",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
            }
        ),
    )
    return AccessChecker(arn)


def _register(session: boto3.Session) -> None:
    session.client("application-autoscaling").register_scalable_target(
        ServiceNamespace="dynamodb",
        ResourceId="table/orders",
        ScalableDimension="dynamodb:table:ReadCapacityUnits",
        MinCapacity=5,
        MaxCapacity=100,
    )


def test_bare_moto_registers_a_scalable_target_for_a_role_without_cloudwatch() -> None:
    _role("scaler", ["application-autoscaling:RegisterScalableTarget"])

    _register(_bare())  # moto checks nothing of the caller's CloudWatch rights


def test_registering_without_the_cloudwatch_permissions_is_refused() -> None:
    checker = _role("scaler", ["application-autoscaling:RegisterScalableTarget"])

    with pytest.raises(ClientError) as refused:
        _register(_strict(checker=checker))

    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    for action in ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"):
        assert action in error["Message"]


def test_with_the_cloudwatch_permissions_it_registers_and_they_count_as_used() -> None:
    checker = _role(
        "scaler",
        [
            "application-autoscaling:RegisterScalableTarget",
            "cloudwatch:DescribeAlarms",
            "cloudwatch:PutMetricAlarm",
            "cloudwatch:DeleteAlarms",
        ],
    )

    _register(_strict(checker=checker))

    assert Grant("cloudwatch:DeleteAlarms", "*") in checker.used


# --- DynamoDB: UpdateTable is asynchronous --------------------------------------------------


def _table(session: boto3.Session) -> Any:
    dynamodb = session.client("dynamodb")
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    return dynamodb


def _raise(dynamodb: Any, read: int) -> None:
    dynamodb.update_table(
        TableName="orders",
        ProvisionedThroughput={"ReadCapacityUnits": read, "WriteCapacityUnits": 5},
    )


def _seen(dynamodb: Any) -> tuple[str, int]:
    table = dynamodb.describe_table(TableName="orders")["Table"]
    return table["TableStatus"], table["ProvisionedThroughput"]["ReadCapacityUnits"]


def test_bare_moto_updates_a_table_at_once_and_twice_in_a_row() -> None:
    dynamodb = _table(_bare())

    _raise(dynamodb, 10)
    _raise(dynamodb, 20)

    assert _seen(dynamodb) == ("ACTIVE", 20)


def test_an_updated_table_is_updating_with_its_old_throughput_and_refuses_another_update() -> None:
    dynamodb = _table(_strict())

    _raise(dynamodb, 10)

    assert _seen(dynamodb) == ("UPDATING", 5)
    with pytest.raises(dynamodb.exceptions.ResourceInUseException) as refused:
        _raise(dynamodb, 20)
    assert refused.value.response["Error"]["Message"] == (
        "Attempt to change a resource which is still in use: Table is being updated: orders"
    )


def test_once_the_update_is_done_the_table_is_active_with_the_new_throughput() -> None:
    dynamodb = _table(_strict())
    _raise(dynamodb, 10)

    clock.advance(UPDATING_FOR + timedelta(seconds=1))

    assert _seen(dynamodb) == ("ACTIVE", 10)
    _raise(dynamodb, 20)  # and it may be updated again


# --- CloudWatch alarm actions to encrypted topics -------------------------------------------


def _alarm_to(session: boto3.Session, key: str, name: str = "ops") -> tuple[str, Any]:
    """An alarm whose ALARM action publishes to a topic encrypted with `key`, and a queue
    subscribed to the topic (its inbox)."""
    sns, sqs = session.client("sns"), session.client("sqs")
    topic = sns.create_topic(Name=name, Attributes={"KmsMasterKeyId": key})["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    session.client("cloudwatch").put_metric_alarm(
        AlarmName="errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[topic],
    )
    return queue, sqs


def _fire(session: boto3.Session) -> None:
    session.client("cloudwatch").set_alarm_state(
        AlarmName="errors", StateValue="ALARM", StateReason="threshold crossed"
    )


def _key(session: boto3.Session, cloudwatch_may_use: bool) -> str:
    account = "123456789012"
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if cloudwatch_may_use:
        statements.append(
            {
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            }
        )
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return str(session.client("kms").create_key(Policy=policy)["KeyMetadata"]["Arn"])


def _received(queue: str, sqs: Any) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"])["Subject"] for m in messages]


def test_bare_moto_runs_no_alarm_action_and_says_nothing_of_the_key() -> None:
    session = _bare()
    queue, sqs = _alarm_to(session, "alias/aws/sns")

    _fire(session)  # accepted: no delivery, and no failure recorded anywhere

    assert _received(queue, sqs) == []


def test_an_alarm_action_to_a_topic_with_the_aws_managed_key_never_delivers() -> None:
    from remediators.simulator.fidelity.cloudwatch_alarm_actions import RULE

    session = _strict()
    queue, sqs = _alarm_to(session, "alias/aws/sns")

    _fire(session)

    assert _received(queue, sqs) == []
    [delivery] = RULE.deliveries
    assert delivery.error is not None
    assert "does not have authorization to access the SNS topic encryption key" in delivery.error


def test_an_alarm_action_delivers_only_if_the_key_lets_cloudwatch_use_it() -> None:
    from remediators.simulator.fidelity.cloudwatch_alarm_actions import RULE

    refusing, allowing = _strict(), _strict()
    closed_queue, sqs = _alarm_to(refusing, _key(refusing, cloudwatch_may_use=False))
    _fire(refusing)
    assert _received(closed_queue, sqs) == []

    queue, sqs = _alarm_to(allowing, _key(allowing, cloudwatch_may_use=True), name="ops-open")
    _fire(allowing)

    assert _received(queue, sqs) == ['ALARM: "errors" in us-east-1']
    assert RULE.deliveries[-1].error is None


def test_an_alarm_action_to_a_topic_whose_policy_does_not_admit_cloudwatch_never_delivers() -> None:
    from remediators.simulator.fidelity.cloudwatch_alarm_actions import RULE

    # Given a topic whose policy (as enforce_ssl writes one) replaced SNS's default one
    session = _strict()
    queue, sqs = _alarm_to(session, _key(session, cloudwatch_may_use=True))
    [topic] = [t["TopicArn"] for t in session.client("sns").list_topics()["Topics"]]
    ssl_only = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sns:Publish",
                "Resource": topic,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    session.client("sns").set_topic_attributes(
        TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(ssl_only)
    )

    _fire(session)

    assert _received(queue, sqs) == []
    assert "is not authorized to perform: SNS:Publish" in (RULE.deliveries[-1].error or "")


def test_an_alarm_set_to_the_state_it_is_in_runs_no_action_again() -> None:
    # Given an alarm whose ALARM action reaches a topic CloudWatch may use
    session = _strict()
    queue, sqs = _alarm_to(session, _key(session, cloudwatch_may_use=True))
    _fire(session)
    assert _received(queue, sqs) == ['ALARM: "errors" in us-east-1']

    # When it is set to ALARM again, a state it is already in
    _fire(session)

    # Then nothing more is sent: actions run on a change of state only
    assert _received(queue, sqs) == []
