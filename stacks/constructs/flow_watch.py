"""The flows' endings that the flows cannot record themselves: an execution that fails in a
recording task, times out, is stopped, or runs out of history leaves its event `pending`. A
rule hands those endings to the flow-ended function, which records them as failed and escalates."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from remediators.core.flows import FLOW_ENDED_DETAIL_TYPE, FLOW_ENDINGS
from stacks import names


class FlowWatch(Construct):
    """A rule on the flows' execution status changes that end them without success."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine_arns: list[str],
        function: lambda_.IFunction,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        events.Rule(
            self,
            "Ended",
            description="autoremediate: flow executions that ended without success",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=[FLOW_ENDED_DETAIL_TYPE],
                detail={"stateMachineArn": state_machine_arns, "status": list(FLOW_ENDINGS)},
            ),
        ).add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=dead_letter_queue,
                retry_attempts=names.RULE_TARGET_RETRIES,
            )
        )
