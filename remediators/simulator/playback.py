"""One scenario's steps played against its deployed stack: alarms fired, events delivered by the
deployed rules to the deployed functions, operators' and schedulers' parts played.

One class of about 550 lines, on purpose: each of the 17 step kinds is a method of one table
(`_STEPS`) over the same run's state (the delivered events, the inbox, the runtime, the
report), and the approval steps wait on what the delivery steps started."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import boto3
from botocore.exceptions import ClientError

from remediators.core import clock
from remediators.core.approval import ApprovalStore, Verdict
from remediators.core.audit import AuditRecord, AuditStore, Outcome
from remediators.core.aws import client
from remediators.core.operations import (
    dead_letters,
    decide_approval,
    deployed_settings,
    format_history,
    handler_functions,
    history,
    replay,
    revert_action,
    start_restore,
)
from remediators.core.policy import format_duration
from remediators.core.revert import RevertRefused
from remediators.core.verify import SCHEDULE_GROUP
from remediators.simulator import pages, resources
from remediators.simulator.alarm_events import read_event_file, set_alarm_state
from remediators.simulator.deploy import (
    DeployedStack,
)
from remediators.simulator.inbox import Inbox
from remediators.simulator.lambda_runtime import HttpResponse, LambdaRuntime
from remediators.simulator.local_aws import LocalAws
from remediators.simulator.results import EventResult, Report
from remediators.simulator.routing import Route, Router
from remediators.simulator.scenario import (
    ApproveStep,
    AwaitTimeoutStep,
    EventStep,
    FaultStep,
    FireStep,
    ForceRevertStep,
    HistoryStep,
    KillSwitchStep,
    OkStep,
    PrefetchStep,
    RedeliverStep,
    RejectStep,
    ReplayStep,
    RestoreStep,
    RevertStep,
    Scenario,
    ScenarioError,
    SweepStep,
    WaitStep,
)

__all__ = ["Playback"]

# How long the simulator waits for an approval flow's next step (moto's interpreter).
_FLOW_WAIT_SECONDS = 20.0


class Playback:
    """One scenario's steps, played against its deployed stack."""

    def __init__(
        self,
        scenario: Scenario,
        stack: DeployedStack,
        runtime: LambdaRuntime,
        report: Report,
        aws: LocalAws,
    ) -> None:
        self.scenario, self.stack, self.runtime, self.report, self.aws = (
            scenario,
            stack,
            runtime,
            report,
            aws,
        )
        self.inbox = Inbox.subscribe(stack)
        self.router = Router()
        self.audit = AuditStore(stack.outputs["AuditTableName"])
        approvals_table = stack.outputs.get("ApprovalsTableName")
        self.approvals = ApprovalStore(approvals_table) if approvals_table else None
        self.delivered: list[dict[str, Any]] = []
        self.faults: list[tuple[Any, str, Callable[..., None]]] = []

    def run(self) -> None:
        """Create the resources, play every step, read the resources back."""
        try:
            resources.create_resources(self.scenario.resources)
            resources.create_alarms(self.scenario.alarms)
            resources.put_metrics(self.scenario.metrics)
        except ClientError as error:
            raise ScenarioError(
                f"{self.scenario.name}: cannot create its resources: {error}"
            ) from None
        self.report.resources_before = self._read_resources()
        try:
            for step in self.scenario.steps:
                _STEPS[type(step)](self, step)
        finally:
            for events, name, hook in self.faults:
                events.unregister(name, hook)
        self.report.resources_after = self._read_resources()

    def _read_resources(self) -> dict[str, Any]:
        state = resources.read_resources(self.scenario.resources)
        for kind, label in (
            ("dynamodb_tables", "table"),
            ("lambda_functions", "function"),
            ("waf_ip_sets", "IP set"),
        ):
            for name, value in state[kind].items():
                self.report.note("resource", f"{label} {name}: {json.dumps(value, sort_keys=True)}")
        return state

    def _deliver(self, event: dict[str, Any], routes: list[Route] | None = None) -> None:
        """Deliver by the deployed rules (or straight to `routes`, as a replay does)."""
        self.delivered.append(event)
        routes = self.router.route(event) if routes is None else routes
        result = _deliver(event, routes, self.runtime, self.audit, self.inbox)
        self.report.events.append(result)
        self.report.note("event", f"{result.alarm} {result.state}: {result.label}", result)
        if result.outcome == "pending" and result.audit and result.audit.get("approval"):
            self._await_request(result)

    def _await_request(self, result: EventResult, known: str | None = None) -> None:
        """A flow's tasks run on Step Functions' thread: wait (bounded) until the flow has
        stored a new approval (not `known`) and sent its email, or has ended; file the record
        and the email with the event."""
        assert self.approvals is not None
        deadline = time.monotonic() + _FLOW_WAIT_SECONDS
        while True:
            record = self.audit.get(result.event_id)
            approval_id = ((record.approval or {}) if record else {}).get("id")
            if (
                record is not None
                and record.outcome is Outcome.PENDING
                and approval_id not in (None, known)
                and self.approvals.get(approval_id) is not None
            ):
                break
            if self._execution_status(result) != "RUNNING":
                return
            if time.monotonic() > deadline:
                raise ScenarioError(f"the flow of {result.event_id} sent no approval request")
            time.sleep(0.05)
        result.take_record(record)
        while not (emails := self.inbox.drain()) and time.monotonic() < deadline:
            time.sleep(0.05)
        result.notifications += emails
        for email in emails:
            self.report.note("approval", f"email: {email['subject']}")

    def _restore(self, step: RestoreStep) -> None:
        event_id, execution = start_restore(self.stack.name, step.restore)
        self.report.note("operator", f"remediate restore {step.restore}: {event_id} started")
        result = EventResult(
            event_id=event_id,
            alarm="remediate restore",
            state=None,
            outcome="pending",
            routes=["restore flow"],
            audit={"approval": {"execution": execution}},
        )
        self.report.events.append(result)
        self._await_request(result)
        if result.audit is not None and result.audit.get("reason") is None:
            # It ended before asking (no policy, no backup): report how.
            record = self.audit.get(event_id)
            result.outcome = record.outcome.value if record else "unmatched"
            if record is not None:
                result.take_record(record)
            result.notifications = self.inbox.drain()

    def _latest_pending(self) -> EventResult:
        for event in reversed(self.report.events):
            if event.outcome == "pending" and event.audit and event.audit.get("approval"):
                return event
        raise ScenarioError(f"{self.scenario.name}: no change is waiting for approval")

    def _links(self, event: EventResult) -> dict[str, str]:
        """The approve and reject links of the event's approval email, as an operator sees them."""
        for email in event.notifications:
            links = {
                line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
                for line in email["message"].splitlines()
                if line.startswith(("Approve: ", "Reject:  "))
            }
            if {"approve", "reject"} <= links.keys():
                return links
        raise ScenarioError(f"no approval email with links for {event.event_id}")

    def _open(self, method: str, url: str, form: dict[str, str] | None = None) -> HttpResponse:
        endpoint = self.stack.outputs["ApprovalEndpointFunction"]
        response, invocation = self.runtime.request_url(endpoint, method, url, form)
        denied = invocation.denied
        if denied:
            self.report.events[-1].denied += denied
        return response

    def _decide(self, step: ApproveStep | RejectStep) -> None:
        pending = self._latest_pending()
        verdict: Verdict = "approve" if isinstance(step, ApproveStep) else "reject"
        how = step.approve if isinstance(step, ApproveStep) else step.reject
        if how == "cli":
            assert pending.audit is not None
            approval_id = pending.audit["approval"]["id"]
            decide_approval(self.stack.name, approval_id, verdict)
            self.report.note("operator", f"remediate approvals {verdict} {approval_id}")
            self._finish_flow(pending)
            return
        link = self._links(pending)[verdict]
        page = self._open("GET", link)
        self.report.note(
            "operator", f"opened the {verdict} link: {page.status} {pages.title(page)}"
        )
        page_forms = pages.forms(page.body)
        if page.status != 200 or verdict not in page_forms:
            raise ScenarioError(f"the {verdict} link did not show a confirmation: {page.body}")
        base = link.split("?", 1)[0]
        answer = self._open("POST", base, page_forms[verdict])
        if answer.status == 303:  # as a browser does: to the page that shows the decision
            location = answer.headers.get("Location") or answer.headers.get("location") or "/"
            answer = self._open("GET", urljoin(base, location))
        self.report.note(
            "operator", f"confirmed ({verdict}): {answer.status} {pages.title(answer)}"
        )
        self._finish_flow(pending)

    def _prefetch(self, step: PrefetchStep) -> None:
        pending = self._latest_pending()
        for verdict, link in sorted(self._links(pending).items()):
            page = self._open("GET", link)
            self.report.note(
                "scanner", f"prefetched the {verdict} link: {page.status} {pages.title(page)}"
            )
        assert self.approvals is not None
        status = self.approvals.get(pending.audit["approval"]["id"])  # type: ignore[index]
        self.report.note("scanner", f"approval still {status['status'] if status else 'missing'}")

    def _await_timeout(self, step: AwaitTimeoutStep) -> None:
        pending = self._latest_pending()
        self.report.note(
            "step", f"nobody decides: wait for the approval of {pending.event_id} to time out"
        )
        self._finish_flow(pending, limit=_FLOW_WAIT_SECONDS + self._approval_window(pending))

    def _approval_window(self, pending: EventResult) -> float:
        assert pending.audit is not None
        deadline = datetime.fromisoformat(pending.audit["approval"]["deadline"])
        return max(0.0, (deadline - clock.now()).total_seconds())

    def _execution_status(self, pending: EventResult) -> str:
        assert pending.audit is not None
        execution = pending.audit["approval"]["execution"]
        return str(client("stepfunctions").describe_execution(executionArn=execution)["status"])

    def _finish_flow(self, pending: EventResult, limit: float = _FLOW_WAIT_SECONDS) -> None:
        """Wait until the flow ends, or asks for its next approval (a restore asks twice);
        report its record as an event."""
        assert pending.audit is not None
        asked = pending.audit["approval"].get("id")
        deadline = time.monotonic() + limit
        while (status := self._execution_status(pending)) == "RUNNING":
            record = self.audit.get(pending.event_id)
            waiting = record is not None and record.outcome is Outcome.PENDING
            if waiting and record and (record.approval or {}).get("id") not in (None, asked):
                break  # a new approval: the restore's cutover
            if time.monotonic() > deadline:
                raise ScenarioError(f"the flow of {pending.event_id} did not go on")
            time.sleep(0.05)
        record = self.audit.get(pending.event_id)
        result = EventResult(
            event_id=pending.event_id,
            alarm=pending.alarm,
            state=pending.state,
            outcome=record.outcome.value if record else "unmatched",
            routes=pending.routes if pending.routes == ["restore flow"] else ["approval flow"],
        )
        if record is not None:
            result.take_record(record)
        for invocation in self.runtime.task_invocations:
            result.logs += invocation.logs
            result.denied += invocation.denied
            result.attempts += invocation.attempts
        self.runtime.task_invocations.clear()
        if result.outcome == Outcome.PENDING.value:
            self._await_request(result, known=asked)
        else:
            result.notifications = self.inbox.drain()
        self.report.events.append(result)
        decided = (record.approval or {}) if record else {}
        who = f" by {decided['source_ip']}" if decided.get("source_ip") else ""
        self.report.note("approval", f"flow {status.lower()}{who}: {result.label}", result)

    def _alarm_state(self, name: str) -> str:
        """The alarm's state; a scenario alarm, or one the stack deployed (a preset)."""
        alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
        if not alarms:
            raise ScenarioError(
                f"{self.scenario.name}: alarm {name!r} is neither one of the scenario's "
                "alarms nor one the stack deployed"
            )
        return str(alarms[0]["StateValue"])

    def _fire(self, step: FireStep) -> None:
        if self._alarm_state(step.fire) == "ALARM":
            self._deliver(set_alarm_state(step.fire, "OK", "threshold no longer crossed", self.aws))
        self.report.note("step", f"fire {step.fire}: alarm -> ALARM")
        self._deliver(
            set_alarm_state(step.fire, "ALARM", "threshold crossed (simulated)", self.aws)
        )

    def _ok(self, step: OkStep) -> None:
        self._alarm_state(step.ok)
        self.report.note("step", f"ok {step.ok}: alarm -> OK")
        self._deliver(set_alarm_state(step.ok, "OK", "threshold no longer crossed", self.aws))

    def _event(self, step: EventStep) -> None:
        path = self.scenario.base_dir / step.event
        self.report.note("step", f"event {path}")
        self._deliver(read_event_file(path))

    def _redeliver(self, step: RedeliverStep) -> None:
        if not self.delivered:
            raise ScenarioError(f"{self.scenario.name}: redeliver before any event")
        self.report.note("step", f"redeliver event {self.delivered[-1].get('id')} (same id)")
        self._deliver(self.delivered[-1])

    def _wait(self, step: WaitStep) -> None:
        clock.advance(step.wait)
        self.report.note(
            "step",
            f"wait {format_duration(step.wait)} (simulated clock now {clock.now():%H:%M:%S})",
        )
        self._run_due_schedules()

    def _run_due_schedules(self) -> None:
        """EventBridge Scheduler's part: run the one-time schedules that are due, in order."""
        scheduler = boto3.client("scheduler")
        due = []
        for summary in scheduler.list_schedules(GroupName=SCHEDULE_GROUP).get("Schedules", []):
            schedule = scheduler.get_schedule(GroupName=SCHEDULE_GROUP, Name=summary["Name"])
            at = _parse_at(schedule["ScheduleExpression"])
            if at is not None and at <= clock.now():
                due.append((at, schedule))
        for at, schedule in sorted(due, key=lambda item: item[0]):
            target = schedule["Target"]
            invocation = self.runtime.invoke_async(target["Arn"], json.loads(target["Input"]))
            if schedule.get("ActionAfterCompletion") == "DELETE":
                scheduler.delete_schedule(GroupName=SCHEDULE_GROUP, Name=schedule["Name"])
            result = invocation.result if isinstance(invocation.result, dict) else {}
            verified = result.get("verified")
            if verified is None:
                outcome = invocation.error or "nothing to verify"
            else:
                outcome = "alarm left ALARM: verified" if verified else "still in ALARM: escalated"
            self.report.verifications.append(
                {
                    "event_id": result.get("event_id"),
                    "due": at.isoformat(),
                    "verified": result.get("verified"),
                }
            )
            self.report.note(
                "scheduler",
                f"{schedule['Name']} due {at:%H:%M:%S}: verify {result.get('event_id')}: {outcome}",
            )
            for notification in self.inbox.drain():
                self.report.note("scheduler", f"notification: {notification['subject']}")

    def _sweep(self, step: SweepStep) -> None:
        """The deployed expiry schedule fires once: its Scheduled Event goes to its target."""
        events = boto3.client("events")
        [rule] = [r for r in events.list_rules()["Rules"] if r.get("ScheduleExpression")]
        [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.aws.account_id,
            "time": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.aws.region,
            "resources": [rule["Arn"]],
            "detail": {},
        }
        self.report.note("scheduler", f"{rule['Name']} ({rule['ScheduleExpression']}) fires")
        invocation = self.runtime.invoke_async(target["Arn"], event)
        result = invocation.result if isinstance(invocation.result, dict) else {}
        for data in result.get("expired", []):
            record = AuditRecord.model_validate(data)
            outcome = EventResult(
                event_id=record.event_id,
                alarm=None,
                state=None,
                outcome=record.outcome.value,
                routes=[rule["Name"]],
                attempts=invocation.attempts,
                logs=invocation.logs,
                denied=invocation.denied,
            )
            outcome.take_record(record)
            self.report.events.append(outcome)
            self.report.note("scheduler", f"{record.target}: {'; '.join(record.changes)}", outcome)
        if invocation.error:
            self.report.note("scheduler", f"the sweep failed: {invocation.error}")

    def _kill_switch(self, step: KillSwitchStep) -> None:
        name = self.stack.outputs["KillSwitchParameter"]
        boto3.client("ssm").put_parameter(
            Name=name, Value=step.kill_switch, Type="String", Overwrite=True
        )
        self.report.note("operator", f"kill switch {name} = {step.kill_switch}")

    def _revert(self, step: RevertStep | ForceRevertStep) -> None:
        force = isinstance(step, ForceRevertStep)
        wanted = step.force_revert if isinstance(step, ForceRevertStep) else step.revert
        event_id = _latest_applied(self.report) if wanted == "latest" else wanted
        command = f"remediate revert {event_id}{' --force' if force else ''}"
        try:
            record = revert_action(deployed_settings(self.stack.name), event_id, force=force)
        except RevertRefused as error:
            self.report.note("operator", f"{command}: refused: {error}")
        else:
            self.report.note("operator", f"{command}: {'; '.join(record.changes)}")

    def _inject_fault(self, step: FaultStep) -> None:
        """Make the remediator's next calls fail with the real botocore error (in-process)."""
        fault = step.inject_fault
        service, operation = fault.call.split(".")
        remediator_client = client(service)  # the cached client the handler uses
        remaining = [fault.times]

        def fail(**_: Any) -> None:
            if remaining[0] > 0:
                remaining[0] -= 1
                raise ClientError(
                    {"Error": {"Code": fault.error, "Message": "injected by the simulator"}},
                    operation,
                )

        service_id = remediator_client.meta.service_model.service_id.hyphenize()
        name = f"before-call.{service_id}.{operation}"
        remediator_client.meta.events.register(name, fail)
        self.faults.append((remediator_client.meta.events, name, fail))
        self.report.note("step", f"inject fault: next {fault.times} {fault.call} -> {fault.error}")

    def _replay(self, step: ReplayStep) -> None:
        letters = dead_letters(self.stack.name, hold=True)
        self.report.note("operator", f"remediate dead-letters --replay: {len(letters)} events")
        for letter in letters:
            self.report.note("operator", f"dead letter ({letter.queue}): {letter.error}")
        lambda_client = boto3.client("lambda")

        def deliver(function: str, event: dict[str, Any]) -> None:
            arn = lambda_client.get_function_configuration(FunctionName=function)["FunctionArn"]
            self._deliver(event, [Route("dead-letter replay", arn)])

        replay(letters, handler_functions(self.stack.name), invoke=deliver)

    def _history(self, step: HistoryStep) -> None:
        records = history(deployed_settings(self.stack.name), step.history)
        self.report.note("operator", f"remediate history --since {format_duration(step.history)}:")
        for line in format_history(records).splitlines():
            self.report.note("history", line)


_STEPS: dict[type[Any], Callable[[Playback, Any], None]] = {
    FireStep: Playback._fire,
    OkStep: Playback._ok,
    EventStep: Playback._event,
    RedeliverStep: Playback._redeliver,
    WaitStep: Playback._wait,
    KillSwitchStep: Playback._kill_switch,
    RevertStep: Playback._revert,
    ForceRevertStep: Playback._revert,
    HistoryStep: Playback._history,
    FaultStep: Playback._inject_fault,
    ReplayStep: Playback._replay,
    ApproveStep: Playback._decide,
    RejectStep: Playback._decide,
    PrefetchStep: Playback._prefetch,
    AwaitTimeoutStep: Playback._await_timeout,
    SweepStep: Playback._sweep,
    RestoreStep: Playback._restore,
}


def _deliver(
    event: dict[str, Any],
    routes: list[Route],
    runtime: LambdaRuntime,
    audit: AuditStore,
    inbox: Inbox,
) -> EventResult:
    detail = event.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    state = detail.get("state")
    result = EventResult(
        event_id=str(event.get("id", "")),
        alarm=detail.get("alarmName"),
        state=state.get("value") if isinstance(state, dict) else None,
        outcome="unmatched",
    )
    result.routes = [route.rule for route in routes]
    begun = time.perf_counter()
    for route in routes:
        invocation = runtime.invoke_async(route.target_arn, event)
        result.attempts += invocation.attempts
        result.logs += invocation.logs
        result.denied += invocation.denied
        if invocation.error is not None:
            result.outcome, result.error = "failed", invocation.error
            result.dead_letter = invocation.dead_letter
        # The record as written to the audit table (events without an id get a derived one).
        returned = invocation.result if isinstance(invocation.result, dict) else {}
        record_id = returned.get("event_id") or result.event_id
        record = audit.get(record_id) if record_id else None
        if record is None:
            continue
        if invocation.error is None:
            result.outcome = record.outcome.value
        # A repeated delivery: replayed by idempotency, or found already applied in the audit.
        if returned.get("duplicate") or returned.get("reason") == "duplicate":
            result.audit = record.model_dump(mode="json")
            result.outcome, result.reason = "skipped", "duplicate"
            continue
        result.take_record(record)
    result.elapsed_ms = (time.perf_counter() - begun) * 1000
    result.notifications = inbox.drain()
    return result


def _parse_at(expression: str) -> datetime | None:
    """The UTC time of a one-time `at(...)` schedule expression; None for other kinds."""
    if not (expression.startswith("at(") and expression.endswith(")")):
        return None
    return datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _latest_applied(report: Report) -> str:
    for event in reversed(report.events):
        if event.outcome == "applied":
            return event.event_id
    raise ScenarioError(f"{report.scenario}: revert latest, but no action was applied")
