"""The alarm state-change event model: the three alarm kinds parse; bad events do not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from remediators.core.events import AlarmEvent, AlarmStateValue
from tests.conftest import load_event


def test_a_single_metric_alarm_parses_with_its_dimensions() -> None:
    event = AlarmEvent.model_validate(load_event("single_metric"))

    assert event.id == "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92"
    assert event.detail.alarm_name == "orders-ddb-throttle"
    assert event.detail.state.value is AlarmStateValue.ALARM
    assert event.detail.state.timestamp == datetime(2019, 10, 2, 17, 4, 40, 989000, tzinfo=UTC)
    assert event.detail.previous_state is not None
    assert event.detail.previous_state.value is AlarmStateValue.OK
    assert event.detail.dimension("AWS/DynamoDB", "TableName") == "orders"
    assert event.detail.configuration.alarm_rule is None


def test_a_metric_math_alarm_names_the_table_its_metrics_agree_on() -> None:
    event = AlarmEvent.model_validate(load_event("metric_math"))

    assert [query.id for query in event.detail.configuration.metrics] == [
        "e1",
        "throttled",
        "consumed",
    ]
    assert event.detail.configuration.metrics[0].expression == "throttled / (consumed + 1)"
    assert event.detail.dimension("AWS/DynamoDB", "TableName") == "orders"


def test_metric_math_over_two_tables_names_no_table() -> None:
    raw = load_event("metric_math")
    raw["detail"]["configuration"]["metrics"][2]["metricStat"]["metric"]["dimensions"] = {
        "TableName": "payments"
    }

    event = AlarmEvent.model_validate(raw)

    assert event.detail.dimension("AWS/DynamoDB", "TableName") is None


def test_a_composite_alarm_parses_without_metrics_or_dimensions() -> None:
    event = AlarmEvent.model_validate(load_event("composite"))

    assert event.detail.configuration.metrics == []
    assert event.detail.configuration.alarm_rule == "ALARM(orders-reads) OR ALARM(orders-writes)"
    assert event.detail.dimension("AWS/DynamoDB", "TableName") is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: e.update(source="aws.ec2"), "source"),
        (
            lambda e: e.update({"detail-type": "EC2 Instance State-change Notification"}),
            "detail-type",
        ),
        (lambda e: e["detail"].pop("alarmName"), "alarmName"),
        (lambda e: e["detail"]["state"].update(value="BROKEN"), "value"),
        (lambda e: e["detail"]["state"].pop("timestamp"), "timestamp"),
        (lambda e: e.pop("id"), "id"),
    ],
    ids=["source", "detail-type", "no-alarm-name", "bad-state", "no-timestamp", "no-id"],
)
def test_malformed_events_fail_naming_the_field(change, field: str) -> None:  # type: ignore[no-untyped-def]
    raw = load_event("single_metric")
    change(raw)

    with pytest.raises(ValidationError) as caught:
        AlarmEvent.model_validate(raw)

    assert any(field in ".".join(map(str, error["loc"])) for error in caught.value.errors())
