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


# --- CloudWatch: composite alarms only to DescribeAlarms on * -------------------------------


def _alarm_reader(name: str, resource: str) -> AccessChecker:
    """A function's role that may call cloudwatch:DescribeAlarms on `resource` only."""
    iam = boto3.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    grant = {"Effect": "Allow", "Action": "cloudwatch:DescribeAlarms", "Resource": resource}
    iam.put_role_policy(
        RoleName=name,
        PolicyName="alarms",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [grant]}),
    )
    return AccessChecker(arn)


def _composite_alarm(name: str = "api-degraded") -> str:
    """A composite alarm in ALARM on a metric alarm `errors`; returns its ARN. moto 5.2.5 has no
    PutCompositeAlarm (NotImplementedError), but its backend holds composite alarms (an alarm
    with a rule) and its DescribeAlarms returns them: the alarm is made there."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    _bare().client("cloudwatch").put_metric_alarm(
        AlarmName="errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    alarm = cloudwatch_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].put_metric_alarm(
        name=name,
        namespace=None,
        metric_name=None,
        comparison_operator=None,
        evaluation_periods=None,
        period=None,
        threshold=None,
        statistic=None,
        description="errors and latency together",
        dimensions=[],
        alarm_actions=[],
        rule='ALARM("errors")',
    )
    alarm.update_state("errors is in ALARM", "{}", "ALARM")
    return str(alarm.alarm_arn)


def _composites(session: boto3.Session, name: str = "api-degraded") -> list[str]:
    answer = session.client("cloudwatch").describe_alarms(
        AlarmNames=[name], AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    return [alarm["AlarmName"] for alarm in answer["CompositeAlarms"]]


def test_bare_moto_describes_a_composite_alarm_to_a_role_allowed_only_on_its_arn() -> None:
    arn = _composite_alarm()
    _alarm_reader("verifier", arn)

    assert _composites(_bare()) == ["api-degraded"]  # moto checks no scope


def test_a_function_allowed_describe_alarms_only_on_alarm_arns_is_refused_composite_alarms() -> (
    None
):
    from remediators.simulator.access import Call

    # Given a function whose role may describe this very alarm, and others, by ARN
    arn = _composite_alarm()
    checker = _alarm_reader("verifier", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*")
    assert checker.allowed(Call("cloudwatch:DescribeAlarms", arn))

    # When it asks for the composite alarm
    with pytest.raises(ClientError) as refused:
        _composites(_strict(checker=checker))

    # Then CloudWatch refuses it: composite alarms need the permission on *
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    denied = "is not authorized to perform: cloudwatch:DescribeAlarms on resource: *"
    assert denied in error["Message"]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_a_function_allowed_describe_alarms_on_star_gets_composite_alarms_and_uses_the_grant() -> (
    None
):
    _composite_alarm()
    checker = _alarm_reader("verifier", "*")

    assert _composites(_strict(checker=checker)) == ["api-degraded"]
    assert Grant("cloudwatch:DescribeAlarms", "*") in checker.used


def test_metric_alarms_and_the_simulators_own_calls_are_answered_as_before() -> None:
    _composite_alarm()
    narrow = _alarm_reader("verifier", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:errors")

    # A metric alarm to the narrow role, even asked for with both types
    answer = (
        _strict(checker=narrow)
        .client("cloudwatch")
        .describe_alarms(AlarmNames=["errors"], AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    )
    assert [alarm["AlarmName"] for alarm in answer["MetricAlarms"]] == ["errors"]
    # The simulator's own calls (no function calling): not checked
    assert _composites(_strict()) == ["api-degraded"]


def test_verification_reads_a_composite_alarm_only_with_describe_alarms_on_star() -> None:
    from remediators.core.aws import reset_clients
    from remediators.core.verify import alarm_state

    _composite_alarm()

    def as_function(checker: AccessChecker) -> None:
        # The process's clients call as the function, as in the simulator's Lambda runtime
        boto3.setup_default_session()
        fidelity.install(boto3.DEFAULT_SESSION, caller=lambda: checker)
        reset_clients()

    # A narrower role gets no state it could take for recovered: the read fails
    as_function(_alarm_reader("narrow", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"))
    with pytest.raises(ClientError, match="AccessDenied"):
        alarm_state("api-degraded")

    # The permission on * (as the deployed verification role has it) reads the state
    as_function(_alarm_reader("verifier", "*"))
    assert alarm_state("api-degraded") == "ALARM"


# --- DynamoDB and Lambda: at most 50 user tags per resource ---------------------------------


def _tags(count: int, prefix: str = "team") -> list[dict[str, str]]:
    return [{"Key": f"{prefix}-{i}", "Value": "x"} for i in range(count)]


def _tagged_table(session: boto3.Session, tags: list[dict[str, str]]) -> str:
    description = session.client("dynamodb").create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        Tags=tags,
    )["TableDescription"]
    return str(description["TableArn"])


def _table_tags(arn: str) -> int:
    """How many keys the table's tags have (moto lists a key tagged again twice)."""
    dynamodb, keys, page = _bare().client("dynamodb"), set(), {"ResourceArn": arn}
    while True:
        answer = dynamodb.list_tags_of_resource(**page)
        keys |= {tag["Key"] for tag in answer["Tags"]}
        if not answer.get("NextToken"):
            return len(keys)
        page["NextToken"] = answer["NextToken"]


def _assert_dynamodb_refusal(refused: pytest.ExceptionInfo[ClientError]) -> None:
    error = refused.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert error["Message"] == (
        "Number of Tags exceed the current limit for the provided ResourceArn"
    )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_bare_moto_creates_and_tags_a_table_past_50_tags() -> None:
    arn = _tagged_table(_bare(), _tags(51))
    _bare().client("dynamodb").tag_resource(ResourceArn=arn, Tags=_tags(1, "more"))

    assert _table_tags(arn) == 52


def test_a_table_past_50_tags_is_refused_as_dynamodb_refuses_it() -> None:
    session = _strict()
    arn = _tagged_table(session, _tags(50))

    with pytest.raises(ClientError) as refused:
        session.client("dynamodb").tag_resource(ResourceArn=arn, Tags=_tags(1, "more"))
    _assert_dynamodb_refusal(refused)
    assert _table_tags(arn) == 50

    session.client("dynamodb").delete_table(TableName="orders")
    with pytest.raises(ClientError) as refused:
        _tagged_table(session, _tags(51))
    _assert_dynamodb_refusal(refused)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        session.client("dynamodb").describe_table(TableName="orders")  # not created


def test_a_table_takes_50_tags_new_values_for_its_keys_and_aws_tags_beside_them() -> None:
    # Given a table with AWS's own tags (CloudFormation's), put there without the rules
    arn = _tagged_table(_bare(), [{"Key": "aws:cloudformation:stack-name", "Value": "app"}])
    dynamodb = _strict().client("dynamodb")

    # 50 tags of its users' go on beside them, and a key it has takes a new value
    dynamodb.tag_resource(ResourceArn=arn, Tags=_tags(50))
    dynamodb.tag_resource(ResourceArn=arn, Tags=[{"Key": "team-0", "Value": "y"}])

    assert _table_tags(arn) == 51


def _function(session: boto3.Session, tags: dict[str, str], name: str = "api-handler") -> str:
    import io
    import zipfile

    iam = boto3.client("iam")
    role_name = f"{name}-role"
    try:
        role = iam.get_role(RoleName=role_name)["Role"]["Arn"]
    except ClientError:
        trust = {"Version": "2012-10-17", "Statement": []}
        role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    configuration = session.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": code.getvalue()},
        Tags=tags,
    )
    return str(configuration["FunctionArn"])


def _function_tags(arn: str) -> int:
    return len(_bare().client("lambda").list_tags(Resource=arn)["Tags"])


def _keys(count: int, prefix: str = "team") -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in _tags(count, prefix)}


def test_bare_moto_creates_and_tags_a_function_past_50_tags() -> None:
    arn = _function(_bare(), _keys(51))
    _bare().client("lambda").tag_resource(Resource=arn, Tags=_keys(1, "more"))

    assert _function_tags(arn) == 52


def test_a_function_past_50_tags_is_refused_as_lambda_refuses_it() -> None:
    session = _strict()
    lambda_client = session.client("lambda")
    arn = _function(session, _keys(50))

    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as refused:
        lambda_client.tag_resource(Resource=arn, Tags=_keys(1, "more"))
    assert refused.value.response["Error"]["Message"] == (
        "Number of tags exceeds resource tag limit."
    )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert _function_tags(arn) == 50

    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        _function(session, _keys(51), name="api-handler-2")
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName="api-handler-2")  # not created


def test_a_function_at_50_tags_takes_new_values_for_its_keys() -> None:
    session = _strict()
    arn = _function(session, _keys(50))

    session.client("lambda").tag_resource(Resource=arn, Tags={"team-0": "y", "team-49": "z"})

    assert _function_tags(arn) == 50
