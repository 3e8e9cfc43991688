"""An approval in words: the page and the email say the same thing, without internal ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from remediators.core.approval import ApprovalRequest
from remediators.core.approval_words import (
    Where,
    changed_settings,
    headline,
    target_in_words,
    time_left,
    value_in_words,
)
from remediators.core.notify import render_approval_request
from remediators.core.registry import Plan

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
WHERE = Where.of("arn:aws:states:eu-west-1:210987654321:execution:approval:x", "Autoremediate")


def _request(**overrides: object) -> ApprovalRequest:
    fields: dict[str, object] = {
        "approval_id": "a1",
        "event_id": "e1",
        "policy": "checkout-rollback",
        "action": "lambda.rollback_alias",
        "alarm": "checkout-live-errors",
        "alarm_reason": "Threshold Crossed",
        "target": "lambda:function/payments:live",
        "target_spec": {"function": "payments", "alias": "live"},
        "plan": Plan(
            before={"version": "3", "weights": {"4": 0.1}},
            after={"version": "3", "weights": {}},
            changes=["send all of live's traffic to version 3"],
        ),
        "requested_at": NOW,
        "deadline": NOW + timedelta(minutes=27, seconds=30),
        "timeout_seconds": 1650,
    }
    return ApprovalRequest.model_validate(fields | overrides)


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("dynamodb:table/orders", "DynamoDB table orders"),
        ("lambda:function/payments:live", "Lambda function payments (alias live)"),
        ("lambda:function/payments", "Lambda function payments"),
        ("wafv2:ipset/REGIONAL/blocked", "WAF IP set blocked (REGIONAL)"),
        ("something:else/x", "something:else/x"),
    ],
)
def test_a_resource_is_named_in_words(key: str, words: str) -> None:
    assert target_in_words(key) == words


@pytest.mark.parametrize(
    ("left", "words"),
    [
        (timedelta(minutes=27, seconds=59), "in 27 minutes"),
        (timedelta(seconds=30), "in less than a minute"),
        (timedelta(hours=1), "in 1 hour"),
        (timedelta(hours=3, minutes=5), "in 3 hours 5 minutes"),
        (timedelta(days=2, hours=4, minutes=9), "in 2 days 4 hours"),
        (timedelta(0), "passed"),
    ],
)
def test_the_time_left_is_said_in_words(left: timedelta, words: str) -> None:
    assert time_left(NOW + left, NOW) == words


def test_settings_are_compared_in_words_with_the_changed_ones_marked() -> None:
    request = _request()

    assert changed_settings(request.plan.before, request.plan.after) == [
        ("version", "3", "3", False),
        ("weights", "4: 10%", "none", True),
    ]
    assert value_in_words({"nested": [1]}) == '{"nested": [1]}'


def test_the_email_says_what_the_page_says() -> None:
    subject, body = render_approval_request(_request(), WHERE, "https://x/a", "https://x/r")

    assert subject == (
        "[autoremediate] Approve a change to Lambda function payments (alias live)? "
        "210987654321 eu-west-1"
    )
    assert "Where:    account 210987654321, eu-west-1, stack Autoremediate" in body
    assert "  * weights  4: 10% -> none" in body
    assert "    version  3 -> 3" in body
    assert "Decide by 2026-12-02 03:27 UTC" in body
    assert "lambda.rollback_alias" not in body


def test_a_restores_two_approvals_are_told_apart() -> None:
    first, second = _request(stage="restore"), _request(stage="cutover")

    assert headline(first).endswith("(1 of 2)")
    assert headline(second).endswith("(2 of 2)")
    _, body = render_approval_request(first, WHERE, "a", "r")
    assert "Approval 1 of 2: restore the backup into a new table" in body
