"""CloudWatch's part: alarm state changes in the local AWS, and the events they send.

moto records the new state but sends no event, so the event is built here from the alarm as
read back (describe_alarms), in the shape CloudWatch sends to EventBridge.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from remediators.core import clock
from remediators.core.errors import AutoremediateError
from remediators.core.events import ALARM_DETAIL_TYPE, ALARM_SOURCE
from remediators.simulator.local_aws import LocalAws

__all__ = ["read_event_file", "set_alarm_state"]


def set_alarm_state(name: str, state: str, reason: str, aws: LocalAws) -> dict[str, Any]:
    """Move alarm `name` to `state`; return the state-change event CloudWatch would send."""
    cloudwatch = boto3.client("cloudwatch")
    previous = _describe(name)
    reason_data = json.dumps({"version": "1.0", "simulated": True})
    cloudwatch.set_alarm_state(
        AlarmName=name, StateValue=state, StateReason=reason, StateReasonData=reason_data
    )
    current = _describe(name)
    now = clock.now()
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": ALARM_DETAIL_TYPE,
        "source": ALARM_SOURCE,
        "account": aws.account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": aws.region,
        "resources": [current["AlarmArn"]],
        "detail": {
            "alarmName": name,
            "state": _state(state, reason, reason_data, now),
            "previousState": _state(
                previous["StateValue"],
                previous.get("StateReason", ""),
                previous.get("StateReasonData"),
                previous.get("StateUpdatedTimestamp", now),
            ),
            "configuration": _configuration(current),
        },
    }


def _describe(name: str) -> dict[str, Any]:
    alarms = boto3.client("cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"]
    if not alarms:
        raise LookupError(f"alarm {name!r} does not exist")
    return dict(alarms[0])


def _state(value: str, reason: str, reason_data: str | None, when: datetime) -> dict[str, Any]:
    state = {
        "value": value,
        "reason": reason,
        # CloudWatch writes milliseconds and a +0000 offset.
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000",
    }
    if reason_data:
        state["reasonData"] = reason_data
    return state


def _configuration(alarm: dict[str, Any]) -> dict[str, Any]:
    configuration: dict[str, Any] = {}
    if alarm.get("AlarmDescription"):
        configuration["description"] = alarm["AlarmDescription"]
    if alarm.get("Metrics"):
        configuration["metrics"] = [_query(query) for query in alarm["Metrics"]]
    elif alarm.get("MetricName"):
        configuration["metrics"] = [
            {
                "id": str(uuid.uuid4()),
                "metricStat": {
                    "metric": {
                        "namespace": alarm["Namespace"],
                        "name": alarm["MetricName"],
                        "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                    },
                    "period": alarm["Period"],
                    "stat": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                },
                "returnData": True,
            }
        ]
    return configuration


def _query(query: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": query["Id"], "returnData": query.get("ReturnData", True)}
    if "Expression" in query:
        entry["expression"] = query["Expression"]
    if "Label" in query:
        entry["label"] = query["Label"]
    if "MetricStat" in query:
        stat = query["MetricStat"]
        entry["metricStat"] = {
            "metric": {
                "namespace": stat["Metric"]["Namespace"],
                "name": stat["Metric"]["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in stat["Metric"].get("Dimensions", [])},
            },
            "period": stat["Period"],
            "stat": stat["Stat"],
        }
    return entry


def read_event_file(path: Path) -> dict[str, Any]:
    """An EventBridge event from a JSON file; a clear error naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AutoremediateError(f"{path}: cannot read event: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise AutoremediateError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise AutoremediateError(f"{path}: an EventBridge event is a JSON object")
    return data
