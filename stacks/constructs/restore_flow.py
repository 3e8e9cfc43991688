"""The restore flow of `dynamodb.restore_from_backup`: a Standard state machine and its tasks
function, with a role that may restore, check and delete only `<table>-restored-*` copies.

    Prepare -> RequestRestoreApproval (.waitForTaskToken) -> approve?
      -> StartRestore -> CheckTable -> ACTIVE? -> ReapplySettings -> VerifyRestore
                            ^   no: attempts left? -> WaitForTable --'   (none: compensate)
      -> RequestCutoverApproval (.waitForTaskToken) -> approve? -> Cutover -> RecordRestored
    Rejected or timed out at either approval: recorded, escalated, nothing more is done.
    A failed step after the restore started: Compensate (delete the copy) -> RestoreFailed;
    after the copy was verified: RecordCutoverFailure (the copy is kept) -> RestoreFailed.
    The kill switch off before the restore or the cutover: RecordKillSwitchStop.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from remediators.actions.dynamodb_restore_from_backup import (
    KILL_SWITCH_OFF,
    RestoreFromBackup,
    RestoreParams,
)
from remediators.core.policy import Policy
from stacks import names
from stacks.constructs.approval_flow import ApprovalFlow
from stacks.constructs.audit_table import AuditTable
from stacks.constructs.guardrail_state import GuardrailState
from stacks.constructs.notifications import Notifications
from stacks.constructs.remediator_function import (
    RemediatorFunction,
    acknowledge_wildcards,
    action_statements,
    function_role,
)
from stacks.constructs.state_machines import decision_task, lambda_task, standard_state_machine


class RestoreFlow(Construct):
    """Everything a restore from backup goes through."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        policies: list[Policy],
        remediator: RemediatorFunction,
        environment: dict[str, str],
        approval: ApprovalFlow,
        audit: AuditTable,
        guardrails: GuardrailState,
        notifications: Notifications,
    ) -> None:
        super().__init__(scope, construct_id)
        self.state_machine_name = names.flow_state_machine_name(
            Stack.of(self).stack_name, "restore"
        )
        self.state_machine_arn = (
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:"
            + self.state_machine_name
        )
        log_group = logs.LogGroup(self, "TasksLogs", retention=logs.RetentionDays.THREE_MONTHS)
        role = function_role(self, "TasksRole", log_group)
        self.tasks = remediator.sibling(
            "RestoreTasks",
            description="autoremediate: tasks of the restore-from-backup flow",
            handler=names.RESTORE_TASKS_HANDLER,
            role=role,
            log_group=log_group,
            environment={**environment, **approval.environment},
        )
        permissions = [
            permission
            for policy in policies
            for permission in RestoreFromBackup.flow_permissions(
                policy.target,  # type: ignore[arg-type]
                cast(RestoreParams, policy.params),
            )
        ]
        permissions = list(dict.fromkeys(permissions))
        for statement in action_statements(permissions):
            role.add_to_policy(statement)
        acknowledge_wildcards(role, permissions)
        audit.grant_record(role)
        guardrails.grant_kill_switch_read(role)
        notifications.grant_publish(role)
        approval.grant_requesting(role)
        approval.accept_decisions_for(self.state_machine_arn)
        remediator.role.add_to_policy(
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self.state_machine_arn]
            )
        )
        self.state_machine = self._state_machine()

    def _state_machine(self) -> sfn.StateMachine:
        failed = sfn.Fail(self, "RestoreFailed", cause="the restore failed; see the audit record")
        record_failure = self._record("RecordPrepareFailure", {"task": "fail"}).next(failed)
        compensate = self._record("Compensate", {"task": "compensate"}).next(failed)
        # After the copy is verified a failure keeps it: it is good, and an operator saw it.
        keep_copy = self._record(
            "RecordCutoverFailure", {"task": "conclude", "ending": "cutover:failed"}
        ).next(failed)
        stopped = self._record("RecordKillSwitchStop", {"task": "conclude", "ending": "disabled"})

        prepare = self._task("Prepare", {"task": "prepare"})
        prepare.add_catch(record_failure, result_path="$.error")
        restore_approval = self._approval("restore", record_failure)
        start = self._task("StartRestore", {"task": "restore"})
        check = self._task("CheckTable", {"task": "check"})
        wait = sfn.Wait(self, "WaitForTable", time=sfn.WaitTime.seconds_path("$.poll_seconds"))
        never_active = sfn.Pass(
            self,
            "TableNeverActive",
            result=sfn.Result.from_object(
                {"Error": "RestoreTimedOut", "Cause": "the restored table never became ACTIVE"}
            ),
            result_path="$.error",
        ).next(compensate)
        reapply = self._task("ReapplySettings", {"task": "reapply"})
        verify = self._task("VerifyRestore", {"task": "verify"})
        cutover_approval = self._approval("cutover", keep_copy)
        cutover = self._task("Cutover", {"task": "cutover"})
        done = self._record("RecordRestored", {"task": "conclude", "ending": "done"})
        for step in (start, cutover):  # the kill switch, checked before each change
            step.add_catch(stopped, errors=[KILL_SWITCH_OFF], result_path="$.error")
        for step in (start, check, reapply, verify):
            step.add_catch(compensate, result_path="$.error")
        cutover.add_catch(keep_copy, result_path="$.error")

        table_ready = (
            sfn.Choice(self, "TableReady")
            .when(sfn.Condition.string_equals("$.job.table_status", "ACTIVE"), reapply)
            .when(
                sfn.Condition.number_greater_than_equals_json_path("$.job.polls", "$.max_polls"),
                never_active,
            )
            .otherwise(wait.next(check))
        )
        reapply.next(verify).next(cutover_approval.request)
        cutover_approval.on_approve(cutover.next(done))
        definition = prepare.next(restore_approval.request)
        restore_approval.on_approve(start.next(check).next(table_ready))

        return standard_state_machine(self, self.state_machine_name, definition, self.tasks)

    def _approval(self, stage: str, on_error: sfn.IChainable) -> _Approval:
        title = stage.capitalize()
        request = decision_task(
            self,
            f"Request{title}Approval",
            self.tasks,
            {"task": "request", "stage": stage, "state": sfn.JsonPath.entire_payload},
        )
        timeout = self._record(
            f"Record{title}Timeout", {"task": "conclude", "ending": f"{stage}:timeout"}
        )
        request.add_catch(timeout, errors=["States.Timeout"], result_path="$.timeout")
        request.add_catch(on_error, result_path="$.error")
        rejected = self._record(
            f"Record{title}Rejection", {"task": "conclude", "ending": f"{stage}:rejected"}
        )
        decision = sfn.Choice(self, f"{title}Decision")
        request.next(decision)
        return _Approval(request, decision, rejected)

    def _record(self, construct_id: str, fields: dict[str, str]) -> tasks.LambdaInvoke:
        """A task that records how the flow ends: retried, so that a passing DynamoDB or SNS
        error does not leave the restore's record `pending`."""
        task = self._task(construct_id, fields)
        task.add_retry(
            errors=["States.TaskFailed"],
            max_attempts=3,
            interval=Duration.seconds(2),
            backoff_rate=2,
        )
        return task

    def _task(self, construct_id: str, fields: dict[str, str]) -> tasks.LambdaInvoke:
        """A task that gets the flow's state and returns the next one."""
        return lambda_task(
            self, construct_id, self.tasks, {**fields, "state": sfn.JsonPath.entire_payload}
        )


class _Approval:
    """A request for a decision, the choice on it, and where a rejection goes."""

    def __init__(
        self, request: tasks.LambdaInvoke, decision: sfn.Choice, rejected: tasks.LambdaInvoke
    ) -> None:
        self.request, self.decision, self.rejected = request, decision, rejected

    def on_approve(self, next_step: sfn.IChainable) -> None:
        self.decision.when(
            sfn.Condition.string_equals("$.decision.decision", "approve"), next_step
        ).otherwise(self.rejected)
