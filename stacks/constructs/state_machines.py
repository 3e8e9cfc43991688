"""What the flows' state machines share: Standard, traced, logging everything, with Lambda
tasks that time out, and callback tasks that wait for an operator's decision."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Duration, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import names

# A decision may take up to a year (the policy model's limit); the execution a day more.
MAX_EXECUTION = Duration.days(366)
TASK_TIMEOUT = Duration.seconds(names.REMEDIATOR_TIMEOUT_SECONDS + 30)


def lambda_task(
    scope: Construct, construct_id: str, function: lambda_.IFunction, payload: dict[str, Any]
) -> tasks.LambdaInvoke:
    """A task whose output is what `function` returns, with a timeout."""
    return tasks.LambdaInvoke(
        scope,
        construct_id,
        lambda_function=function,
        payload=sfn.TaskInput.from_object(payload),
        output_path="$.Payload",
        task_timeout=sfn.Timeout.duration(TASK_TIMEOUT),
    )


def decision_task(
    scope: Construct, construct_id: str, function: lambda_.IFunction, payload: dict[str, Any]
) -> tasks.LambdaInvoke:
    """A `.waitForTaskToken` task: `function` gets the token (to store, never to send), the
    operator's decision goes to `$.decision`, and it times out after `$.timeout_seconds`."""
    return tasks.LambdaInvoke(
        scope,
        construct_id,
        lambda_function=function,
        integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
        payload=sfn.TaskInput.from_object(
            {
                **payload,
                "token": sfn.JsonPath.task_token,
                "execution": sfn.JsonPath.execution_id,
            }
        ),
        result_path="$.decision",
        task_timeout=sfn.Timeout.at("$.timeout_seconds"),
    )


def standard_state_machine(
    scope: Construct, name: str, definition: sfn.IChainable, tasks_function: lambda_.Function
) -> sfn.StateMachine:
    """The named Standard state machine of `definition`, traced and logging ALL."""
    log_group = logs.LogGroup(scope, "Logs", retention=logs.RetentionDays.THREE_MONTHS)
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=name,
        state_machine_type=sfn.StateMachineType.STANDARD,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        timeout=MAX_EXECUTION,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True
        ),
    )
    tasks_cfn = tasks_function.node.default_child
    assert isinstance(tasks_cfn, lambda_.CfnFunction)
    tasks_id = Stack.of(state_machine).get_logical_id(tasks_cfn)
    Validations.of(state_machine.role).acknowledge(
        Acknowledgment(
            id="AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            reason="X-Ray tracing (xray:PutTraceSegments, ...) and log delivery "
            "(logs:CreateLogDelivery, ...) accept no resource ARN",
        ),
        Acknowledgment(
            id=f"AwsSolutions::AwsSolutions-IAM5[Resource::<{tasks_id}.Arn>:*]",
            reason="lambda:InvokeFunction on the tasks function's versions and aliases "
            "(CDK grants the function and its qualifiers)",
        ),
    )
    return state_machine
