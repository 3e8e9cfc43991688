"""`remediate explain EVENT.json`: which deployed rule and which policy an event matches, and
what the remediator would do with it — found with reads only (a dry run), against the
account (the caller's credentials) or, with `--simulate`, against the local AWS."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from remediators.core.audit import AuditRecord, AuditStore
from remediators.core.events import AlarmEvent
from remediators.core.guardrails import GuardrailState, KillSwitch
from remediators.core.notify import Notifier
from remediators.core.operations import (
    DEFAULT_STACK,
    deployed_settings,
    event_kind,
    stack_outputs,
)
from remediators.core.policy import load_policy_file
from remediators.core.remediate import Remediator
from remediators.core.verify import Scheduler
from remediators.simulator.alarm_events import read_event_file

__all__ = ["explain"]

# What the entry point of each other event kind does with it (see remediators/handlers/).
_OTHER_KINDS = {
    "flow_ended": "a flow's execution ended; the flow-ended function records its event "
    "`failed` (flow_ended, escalated) if the flow left it `pending`, else records the status "
    "change itself (`skipped:flow_recorded`); nothing acts",
    "verification": "a verification request; the verification function marks the action's "
    "record verified, or escalates it (`unresolved`) if its alarm is still in ALARM; nothing "
    "acts",
    "expiry": "the expiry schedule; the expiry function undoes the changes whose time ran out "
    "(expired IP blocks), each recorded `applied:expired`",
}


def explain(
    event_path: Path, policy_path: Path, stack_name: str = DEFAULT_STACK, simulate: bool = False
) -> str:
    """The explanation, as lines of text."""
    event = read_event_file(event_path)
    policies = load_policy_file(policy_path)
    with ExitStack() as stack:
        where = "the account"
        if simulate:
            from remediators.simulator.deploy import deploy, synthesize
            from remediators.simulator.local_aws import local_aws

            aws = stack.enter_context(local_aws())
            stack_name = deploy(synthesize(policy_path), aws).name
            where = "the local AWS (moto): the account's resources are not there"
        lines = [f"event {event.get('id', '?')} from {event_path}"]
        lines += _rules(event, stack_name)
        kind = event_kind(event)
        if kind != "alarm":
            lines.append(f"not an alarm event: {_OTHER_KINDS[kind]}")
            return "\n".join(lines)
        try:
            alarm_event = AlarmEvent.model_validate(event)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            lines.append(f"not a well-formed alarm event: {problems}")
            lines.append("would be recorded: invalid (nothing acts)")
            return "\n".join(lines)
        settings = deployed_settings(stack_name)
        audit = AuditStore(settings.audit_table)
        remediator = Remediator(
            policies=policies,
            audit=audit,
            notifier=Notifier({}),
            kill_switch=KillSwitch(settings.kill_switch_parameter),
            guardrails=GuardrailState(settings.locks_table, audit),
            scheduler=Scheduler("", settings.scheduler_role_arn),
        )
        lines += _decision(remediator.explain(alarm_event), where)
    return "\n".join(lines)


def _rules(event: dict[str, Any], stack_name: str) -> list[str]:
    """The stack's deployed rules, matched as the simulator routes (moto's pattern matcher)."""
    import boto3

    from remediators.simulator.routing import Router

    stack_outputs(stack_name)  # a clear error when the stack is not there
    paginator = boto3.client("cloudformation").get_paginator("list_stack_resources")
    ours = sorted(
        r["PhysicalResourceId"]
        for page in paginator.paginate(StackName=stack_name)
        for r in page["StackResourceSummaries"]
        if r["ResourceType"] == "AWS::Events::Rule"
    )
    matched = sorted({route.rule for route in Router().route(event) if route.rule in ours})
    if not matched:
        return [f"no deployed rule matches ({', '.join(ours)}): the event would not be delivered"]
    return [f"matched rule {name}: delivered to the remediator" for name in matched]


def _decision(record: AuditRecord, where: str) -> list[str]:
    lines = []
    if record.policy:
        target = f" on {record.target}" if record.target else ""
        lines.append(f"policy {record.policy}: {record.action}{target}")
    outcome = record.outcome.value + (f":{record.reason}" if record.reason else "")
    verb = "would apply" if outcome == "applied" else "would be recorded as"
    lines.append(f"{verb}: {outcome} (read from {where})")
    if record.error:
        lines.append(f"  because: {record.error}")
    lines += [f"  {'planned' if outcome != 'applied' else 'change'}: {c}" for c in record.changes]
    if record.before is not None:
        lines.append(f"  before: {json.dumps(record.before, sort_keys=True)}")
    return lines
