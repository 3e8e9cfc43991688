"""Tasks of the restore state machine (`dynamodb.restore_from_backup`), one Lambda function;
the task is in the payload and the flow's state (`start`, `job`, ...) travels with it.

- `prepare`: find the policy and what to restore from, read what a restore does not copy.
- `request` (a `.waitForTaskToken` task, twice: `stage` restore, then cutover): email the
  signed approve and reject links, as the approval flow does.
- `restore`, `check` (looped by the state machine until ACTIVE, bounded), `reapply`, `verify`,
  `cutover`: the steps, done by the action.
- `conclude`: the flow ended (`done`, or rejected or timed out at a stage): record, notify.
- `compensate`: a step failed: delete the half-restored table (never the source, never one in
  use), record the failure, notify.

Every restore has one audit record, under the event id that started it (the alarm event's,
or `restore-...` for `remediate restore`): `pending` while it waits, then its outcome.
"""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from typing import Any, Literal, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

import remediators.actions  # noqa: F401  (declares the actions by name; each loads when first needed)
from remediators.actions.dynamodb_restore_from_backup import (
    KillSwitchOff,
    RestoreFromBackup,
    RestoreJob,
    RestoreParams,
    RestoreSource,
)
from remediators.actions.dynamodb_scale_capacity import TableTarget
from remediators.core import clock
from remediators.core.approval import ApprovalRequest, approval_id_for
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.errors import ActionError
from remediators.core.guardrails import KillSwitch
from remediators.core.notify import Notifier, publish
from remediators.core.policy import Policies, Policy, load_shipped_policy_file
from remediators.core.registry import Plan
from remediators.core.settings import Settings
from remediators.flows.approval import approval_store, send_approval_request

__all__ = ["lambda_handler", "restore_policy"]

logger = Logger()
metrics = Metrics()

# How each ending is recorded: (outcome, reason, escalated).
_ENDINGS = {
    "done": (Outcome.APPLIED, None, False),
    "restore:rejected": (Outcome.SKIPPED, "rejected", True),
    "restore:timeout": (Outcome.SKIPPED, "approval_timeout", True),
    "cutover:rejected": (Outcome.SKIPPED, "cutover_rejected", True),
    "cutover:timeout": (Outcome.SKIPPED, "cutover_timeout", True),
    "cutover:failed": (Outcome.FAILED, "cutover_failed", True),
    "disabled": (Outcome.SKIPPED, "disabled", True),
}


@cache
def _policies(path: str) -> Policies:
    return load_shipped_policy_file(path)


def restore_policy(policies: Policies, table: str) -> Policy | None:
    """The restore policy that names `table` (every restore policy names its table)."""
    return next(
        (
            policy
            for policy in policies.policies_running(RestoreFromBackup.name)
            if policy.target == TableTarget(table=table)
        ),
        None,
    )


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one task of the restore flow; returns the flow's next state."""
    settings = Settings.from_env()
    policies = _policies(str(settings.policy_path))
    task, state = event["task"], dict(event.get("state", {}))
    logger.append_keys(event_id=state.get("start", {}).get("event_id"), task=task)
    if task == "prepare":
        return _prepare(settings, policies, state)
    if task == "fail":
        return _prepare_failed(settings, policies, state)
    job = RestoreJob.model_validate(state["job"])
    action = _action(policies, job)
    if task == "request":
        return _request(settings, policies, job, action, event)
    if task == "conclude":
        return _conclude(settings, policies, state, job, event["ending"])
    if task == "compensate":
        return _compensate(settings, policies, state, job, action)
    return state | {"job": _step(settings, task, action, job).model_dump(mode="json")}


def _step(settings: Settings, task: str, action: RestoreFromBackup, job: RestoreJob) -> RestoreJob:
    """One step of the restore itself, done by the action; what it learns goes into the job."""
    if task in ("restore", "cutover") and not KillSwitch(settings.kill_switch_parameter).enabled():
        raise KillSwitchOff(f"the kill switch is off: no {task} (the flow stops here)")
    if task == "restore":
        action.start_restore(job)
        return job.model_copy(update={"polls": 0})
    if task == "check":
        return job.model_copy(
            update={"polls": job.polls + 1, "table_status": action.table_status(job)}
        )
    if task == "reapply":
        return job.model_copy(update={"reapplied": action.reapply(job)})
    if task == "verify":
        return job.model_copy(update={"verification": action.verify(job)})
    if task == "cutover":
        before, after = action.cut_over(job)
        if after != job.restored_table:
            raise ActionError(f"{action.params.cutover} reads {after!r} after the cutover")
        return job.model_copy(update={"setting_before": before, "setting_after": after})
    raise ValueError(f"unknown restore task {task!r}")


def _request(
    settings: Settings,
    policies: Policies,
    job: RestoreJob,
    action: RestoreFromBackup,
    event: dict[str, Any],
) -> dict[str, Any]:
    """Record the job as waiting for this stage's decision, then email the links."""
    request = _approval_request(policies, job, action, event["stage"])
    approval = {
        "id": request.approval_id,
        "execution": event["execution"],
        "deadline": request.deadline.isoformat(),
    }
    reason = f"awaiting_{event['stage']}_approval"
    _record(settings, policies, job, Outcome.PENDING, reason, approval=approval)
    return send_approval_request(settings, request, event["token"], event["execution"], policies)


def _conclude(
    settings: Settings, policies: Policies, state: dict[str, Any], job: RestoreJob, ending: str
) -> dict[str, Any]:
    """The flow ended (done, rejected, timed out, stopped, or a failed cutover that keeps the
    copy): record how, and notify."""
    outcome, reason, escalated = _ENDINGS[ending]
    # The decision that ended the flow (the cutover's, when done); none on a timeout.
    timed_out = ending.endswith(":timeout")
    decision = None if timed_out else state.get("decision")
    if timed_out:  # nobody decided: the approval is closed, not left pending
        stage = ending.split(":", 1)[0]
        approval_store(settings).close(approval_id_for(f"{job.event_id}:{stage}"), "expired")
    record = _record(
        settings,
        policies,
        job,
        outcome,
        reason,
        escalated=escalated,
        notify=True,
        approval=decision or {"decision": "timeout"},
        error=_cause(state) if "error" in state else None,
    )
    metrics.add_metric(name=f"Restore_{reason or 'done'}", unit=MetricUnit.Count, value=1)
    return state | {"record": record.model_dump(mode="json")}


def _prepare(settings: Settings, policies: Policies, state: dict[str, Any]) -> dict[str, Any]:
    """The job from the flow's input: policy, source, restored table's name, source settings."""
    start = state["start"]
    table = TableTarget.model_validate(start["target_spec"])
    policy = policies.policy_named(start["policy"]) if start.get("policy") else None
    policy = policy or restore_policy(policies, table.table)
    if policy is None:
        raise ActionError(
            f"no policy restores {table.table}: add a dynamodb.restore_from_backup one"
        )
    action = RestoreFromBackup(table, cast(RestoreParams, policy.params))
    plan = (
        Plan.model_validate(start["plan"])
        if start.get("plan")
        else action.plan(start.get("backup_arn"), start.get("point_in_time"))
    )
    if plan.skip_reason:
        raise ActionError(plan.note or plan.skip_reason)
    setting = action.read_setting()
    if setting not in (None, table.table):
        # After an earlier cutover the application reads a copy: restoring the old table now
        # would move it back to older data.
        raise ActionError(
            f"{action.params.cutover} reads {setting!r}, not {table.table}: the application "
            "has moved to another table (an earlier restore?); point the policy's target at "
            "the table it reads"
        )
    params = action.params
    job = RestoreJob(
        event_id=start["event_id"],
        policy=policy.name,
        table=table.table,
        restored_table=plan.after["restored_table"],
        source=RestoreSource.model_validate(plan.after["source"]),
        requested_by=start.get("requested_by", ""),
        requested_at=clock.now(),
        alarm=start.get("alarm", ""),
        alarm_reason=start.get("alarm_reason", ""),
        source_settings=action.read_source_settings(),
    )
    timeout = policies.approval_timeout(policy)
    return state | {
        "job": job.model_dump(mode="json"),
        "timeout_seconds": max(1, int(timeout.total_seconds())),
        "poll_seconds": params.poll_seconds,
        "max_polls": params.max_polls,
    }


def _action(policies: Policies, job: RestoreJob) -> RestoreFromBackup:
    policy = policies.policy_named(job.policy)
    if policy is None:
        raise ActionError(f"policy {job.policy} is no longer in the policy file")
    return RestoreFromBackup(TableTarget(table=job.table), cast(RestoreParams, policy.params))


def _approval_request(
    policies: Policies,
    job: RestoreJob,
    action: RestoreFromBackup,
    stage: Literal["restore", "cutover"],
) -> ApprovalRequest:
    """What the operator approves at `stage`: the restore, or the cutover to its result."""
    policy = policies.policy_named(job.policy)
    assert policy is not None
    if stage == "restore":
        plan = Plan(
            before=action.read() | {"setting": action.read_setting()},
            after={
                "restored_table": job.restored_table,
                "source": job.source.model_dump(mode="json"),
            },
            changes=[
                f"restore {job.table} from {job.source} into a new table {job.restored_table}",
                f"requested by {job.requested_by}; the cutover asks again after verification",
            ],
        )
    else:
        verification = job.verification or {}
        sample = (
            f"; {verification['sample_in_source']} of {verification['sample']} sampled keys "
            "are in the source"
            if "sample" in verification
            else ""
        )
        current = action.read_setting()
        plan = Plan(
            before={"setting": current},
            after={"setting": job.restored_table},
            changes=[
                f"point {action.params.cutover} at {job.restored_table} (now {current or 'unset'})",
                f"verified: {verification.get('restored_items')} items restored, "
                f"{verification.get('expected_items')} expected{sample}",
                *[f"re-applied: {item}" for item in job.reapplied],
                f"{job.table} is kept; delete it by hand once you are sure",
            ],
        )
    now = clock.now()
    timeout = policies.approval_timeout(policy)
    return ApprovalRequest(
        approval_id=approval_id_for(f"{job.event_id}:{stage}"),
        event_id=job.event_id,
        policy=job.policy,
        action=RestoreFromBackup.name,
        alarm=job.alarm or "remediate restore",
        alarm_reason=job.alarm_reason or f"a restore was requested by {job.requested_by}",
        target=action.target.resource_key,
        target_spec=action.target.model_dump(mode="json"),
        plan=plan,
        requested_at=now,
        deadline=now + timeout,
        timeout_seconds=max(1, int(timeout / timedelta(seconds=1))),
        stage=stage,
    )


def _compensate(
    settings: Settings,
    policies: Policies,
    state: dict[str, Any],
    job: RestoreJob,
    action: RestoreFromBackup,
) -> dict[str, Any]:
    cause = _cause(state)
    try:
        discarded = action.discard(job)
    except Exception as failure:  # still record: the operator must clean up by hand
        discarded = f"{job.restored_table} could not be deleted: {failure}"
    record = _record(
        settings,
        policies,
        job,
        Outcome.FAILED,
        "restore_failed",
        escalated=True,
        notify=True,
        error=f"{cause}; {discarded}",
    )
    return state | {"record": record.model_dump(mode="json")}


def _record(
    settings: Settings,
    policies: Policies,
    job: RestoreJob,
    outcome: Outcome,
    reason: str | None,
    *,
    escalated: bool = False,
    notify: bool = False,
    approval: dict[str, Any] | None = None,
    error: str | None = None,
) -> AuditRecord:
    """The job's audit record, under its event id (each write replaces the last)."""
    fields = {
        "approval": approval,
        "changes": _changes(job),
        "before": {"setting": job.setting_before} if job.setting_after else None,
        "planned": {
            "restored_table": job.restored_table,
            "source": job.source.model_dump(mode="json"),
        },
        "after": _after(job),
        "error": error,
    }
    return _put_record(
        settings,
        policies,
        _base(job.event_id, job.policy, job.table, job.alarm)
        | fields
        | {"started_at": job.requested_at},
        outcome,
        reason,
        escalated=escalated,
        notify=notify,
    )


def _prepare_failed(
    settings: Settings, policies: Policies, state: dict[str, Any]
) -> dict[str, Any]:
    """Nothing was restored: the request was bad (no policy, no backup) or never reached an
    operator. Record why."""
    start = state["start"]
    table = start.get("target_spec", {}).get("table", "?")
    record = _put_record(
        settings,
        policies,
        _base(start["event_id"], start.get("policy"), table, start.get("alarm", ""))
        | {"error": _cause(state)},
        Outcome.FAILED,
        "restore_failed",
        escalated=True,
        notify=True,
    )
    return state | {"record": record.model_dump(mode="json")}


def _cause(state: dict[str, Any]) -> str:
    """The failed step's error, as Step Functions caught it (`$.error`), in one line."""
    error = state.get("error", {})
    cause = str(error.get("Cause", ""))
    try:  # a Lambda function's error: {"errorType": ..., "errorMessage": ...}
        details = json.loads(cause)
        cause = f"{details['errorType']}: {details['errorMessage']}"
    except (ValueError, TypeError, KeyError):
        cause = f"{error.get('Error', 'Error')}: {cause}"
    return cause


def _base(event_id: str, policy: str | None, table: str, alarm: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "alarm": alarm or None,
        "alarm_state": "ALARM" if alarm else None,
        "policy": policy,
        "action": RestoreFromBackup.name,
        "target": f"dynamodb:table/{table}",
        "target_spec": {"table": table},
    }


def _put_record(
    settings: Settings,
    policies: Policies,
    fields: dict[str, Any],
    outcome: Outcome,
    reason: str | None,
    *,
    escalated: bool,
    notify: bool,
) -> AuditRecord:
    now = clock.now()
    record = AuditRecord(
        outcome=outcome,
        reason=reason,
        escalated=escalated,
        recorded_at=now,
        **{"started_at": now} | fields,
    )
    channel = None
    if notify:
        policy = policies.policy_named(record.policy) if record.policy else None
        # A restore no policy names (`remediate restore` of another table) tells the defaults.
        channel = policies.channel(policy) if policy else policies.defaults.notify
    audit, notifier = AuditStore(settings.audit_table), Notifier(settings.notification_topics)
    publish(record, audit, notifier, channel)
    return record


def _changes(job: RestoreJob) -> list[str]:
    changes = [f"restore {job.table} from {job.source} into {job.restored_table}"]
    if job.table_status:
        changes.append(f"{job.restored_table} {job.table_status} after {job.polls} checks")
    changes += [f"re-applied: {item}" for item in job.reapplied]
    if job.setting_after:
        changes.append(f"setting {job.setting_before!r} -> {job.setting_after!r}")
    return changes


def _after(job: RestoreJob) -> dict[str, Any] | None:
    if job.table_status is None:
        return None
    return {
        "restored_table": job.restored_table,
        "status": job.table_status,
        "verification": job.verification,
        "setting": job.setting_after,
    }
