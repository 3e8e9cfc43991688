"""The "CloudWatch Alarm State Change" event, as EventBridge delivers it.

Powertools has no parser model for it, so this is ours: envelope first (the fields of
Powertools' EventBridgeModel), then the `detail`. The envelope is declared here rather than
imported, because importing Powertools' parser models loads every model it has (~0.1 s of
cold start, see docs/benchmarks.md). Single-metric, metric-math and composite alarms all
parse; only the first two carry metric dimensions.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ALARM_DETAIL_TYPE",
    "ALARM_SOURCE",
    "AlarmDetail",
    "AlarmEvent",
    "AlarmState",
    "AlarmStateValue",
    "MetricDataQuery",
]

ALARM_SOURCE = "aws.cloudwatch"
ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"

# CloudWatch writes offsets as +0000; ISO 8601 parsers want +00:00.
_COMPACT_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


class _Detail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class AlarmStateValue(StrEnum):
    """The three states a CloudWatch alarm can be in."""

    ALARM = "ALARM"
    OK = "OK"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class AlarmState(_Detail):
    """One side of the transition (`state` or `previousState`)."""

    value: AlarmStateValue
    reason: str = ""
    reason_data: str | None = Field(default=None, alias="reasonData")
    timestamp: datetime

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_offset(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _COMPACT_OFFSET.sub(r"\1:\2", value)
        return value


class Metric(_Detail):
    """A metric by namespace, name and dimensions."""

    namespace: str
    name: str
    dimensions: dict[str, str] = Field(default_factory=dict)


class MetricStat(_Detail):
    """A metric with its period and statistic."""

    metric: Metric
    period: int
    stat: str
    unit: str | None = None


class MetricDataQuery(_Detail):
    """One entry of `configuration.metrics`: a metric (metricStat) or an expression."""

    id: str
    metric_stat: MetricStat | None = Field(default=None, alias="metricStat")
    expression: str | None = None
    label: str | None = None
    return_data: bool | None = Field(default=None, alias="returnData")


class AlarmConfiguration(_Detail):
    """`configuration`: metrics for metric alarms, `alarmRule` for composite alarms."""

    description: str | None = None
    metrics: list[MetricDataQuery] = Field(default_factory=list)
    alarm_rule: str | None = Field(default=None, alias="alarmRule")


class AlarmDetail(_Detail):
    """`detail` of a "CloudWatch Alarm State Change" event."""

    alarm_name: str = Field(alias="alarmName", min_length=1)
    state: AlarmState
    previous_state: AlarmState | None = Field(default=None, alias="previousState")
    configuration: AlarmConfiguration = Field(default_factory=AlarmConfiguration)

    def dimension(self, namespace: str, name: str) -> str | None:
        """The value of dimension `name` on the alarm's metrics in `namespace`, if exactly one.

        Metric-math alarms may read several metrics; they name a resource only when all the
        metrics in `namespace` agree on it.
        """
        values = {
            query.metric_stat.metric.dimensions[name]
            for query in self.configuration.metrics
            if query.metric_stat is not None
            and query.metric_stat.metric.namespace == namespace
            and name in query.metric_stat.metric.dimensions
        }
        return values.pop() if len(values) == 1 else None


class AlarmEvent(BaseModel):
    """The whole EventBridge event: the envelope, with our typed detail."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    version: str
    id: str = Field(min_length=1)
    source: Literal["aws.cloudwatch"]
    account: str
    time: datetime
    region: str
    resources: list[str]
    detail_type: Literal["CloudWatch Alarm State Change"] = Field(alias="detail-type")
    detail: AlarmDetail
    replay_name: str | None = Field(default=None, alias="replay-name")
