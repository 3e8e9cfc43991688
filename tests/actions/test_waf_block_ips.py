"""waf.block_ips on moto: offenders from the access logs, allowlist, top, the 10,000 cap, IPv6,
already blocked, LockToken races with another writer, the blocks ledger, sweep, revert, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from remediators.actions.waf_block_ips import (
    WAF_IP_SET_LIMIT,
    BlockIps,
    BlockIpsParams,
    IpSetTarget,
)
from remediators.core import clock
from remediators.core.aws import client, reset_clients
from remediators.core.blocks import BlockLedger
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from tests.conftest import create_blocks_table

pytestmark = pytest.mark.usefixtures("aws")

LOG_GROUP = "/aws/apigateway/orders-api-access"
BLOCKS_TABLE = "autoremediate-blocks"
KEY = "wafv2:ipset/REGIONAL/blocked-ips"


@pytest.fixture(autouse=True)
def blocks_table(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    create_blocks_table(BLOCKS_TABLE)
    monkeypatch.setenv("BLOCKS_TABLE_NAME", BLOCKS_TABLE)
    clock.use_simulated_time()  # backoff and polling sleeps return at once


def _ip_set(addresses: list[str] | None = None, version: str = "IPV4") -> IpSetTarget:
    summary = boto3.client("wafv2").create_ip_set(
        Name="blocked-ips",
        Scope="REGIONAL",
        IPAddressVersion=version,
        Addresses=addresses or [],
        Description="abusive clients",
    )["Summary"]
    return IpSetTarget(ip_set="blocked-ips", id=summary["Id"], log_group=LOG_GROUP)


def _addresses(target: IpSetTarget) -> list[str]:
    """The set as another client sees it (not the action's cached client)."""
    response = boto3.client("wafv2").get_ip_set(
        Name=target.ip_set, Scope=target.scope, Id=target.id
    )
    return list(response["IPSet"]["Addresses"])


def _other_writer_adds(target: IpSetTarget, address: str) -> None:
    """Another tool (or person) adding to the same set, through its own client."""
    waf = boto3.client("wafv2")
    response = waf.get_ip_set(Name=target.ip_set, Scope=target.scope, Id=target.id)
    waf.update_ip_set(
        Name=target.ip_set,
        Scope=target.scope,
        Id=target.id,
        Addresses=[*response["IPSet"]["Addresses"], address],
        LockToken=response["LockToken"],
    )


def _logs(
    requests: dict[str, int],
    status: int = 200,
    seconds_ago: int = 30,
    extra: tuple[str, ...] = (),
) -> None:
    """Access-log lines in JSON, `requests[ip]` for each address, `seconds_ago` before now."""
    logs = boto3.client("logs")
    if not logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"]:
        logs.create_log_group(logGroupName=LOG_GROUP)
    stream = f"stream-{seconds_ago}-{status}"
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    at = int((clock.now() - timedelta(seconds=seconds_ago)).timestamp() * 1000)
    messages = [
        json.dumps({"ip": ip, "status": str(status), "path": "/orders"})
        for ip, count in requests.items()
        for _ in range(count)
    ] + list(extra)
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": at + i, "message": m} for i, m in enumerate(messages)],
    )


def _alarm(period: int = 300) -> AlarmDetail:
    return AlarmDetail.model_validate(
        {
            "alarmName": "api-5xx-spike",
            "state": {"value": "ALARM", "timestamp": clock.now().isoformat()},
            "configuration": {
                "metrics": [
                    {
                        "id": "m1",
                        "metricStat": {
                            "metric": {
                                "namespace": "AWS/ApiGateway",
                                "name": "5XXError",
                                "dimensions": {"ApiName": "orders"},
                            },
                            "period": period,
                            "stat": "Sum",
                        },
                    }
                ]
            },
        }
    )


def _action(target: IpSetTarget, alarm: AlarmDetail | None = None, **params: Any) -> BlockIps:
    params.setdefault("min_requests", 5)
    return BlockIps(target, BlockIpsParams(**params), alarm or _alarm())


def _ledger() -> dict[str, datetime]:
    return BlockLedger(BLOCKS_TABLE).expiries(KEY)


def _hook(operation: str, handler: Any) -> None:
    client("wafv2").meta.events.register(f"before-call.wafv2.{operation}", handler)


# --- plan and apply -----------------------------------------------------------------------


def test_the_busiest_addresses_over_the_threshold_are_blocked_busiest_first() -> None:
    target = _ip_set(["192.0.2.1/32"])
    _logs({"203.0.113.7": 9, "198.51.100.4": 12, "198.51.100.5": 4, "203.0.113.8": 5})
    action = _action(target, block_for="1h")

    plan = action.plan()
    action.apply(plan)

    added = ["198.51.100.4/32", "203.0.113.7/32", "203.0.113.8/32"]
    assert plan.after["added"] == added
    assert plan.after["requests"] == {
        "198.51.100.4/32": 12,
        "203.0.113.7/32": 9,
        "203.0.113.8/32": 5,
    }
    assert plan.before == {"size": 1, "already_blocked": []}
    assert plan.changes[1:] == [
        "block 198.51.100.4/32 (12 requests)",
        "block 203.0.113.7/32 (9 requests)",
        "block 203.0.113.8/32 (5 requests)",
    ]
    assert _addresses(target) == ["192.0.2.1/32", *added]
    assert action.read_back() == {"size": 4, "added": added}


def test_each_block_is_recorded_in_the_ledger_with_its_expiry() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 6})
    action = _action(target, block_for="6h")

    plan = action.plan()
    action.apply(plan)

    expires_at = datetime.fromisoformat(plan.after["expires_at"])
    assert abs(expires_at - (clock.now() + timedelta(hours=6))) < timedelta(minutes=1)
    assert _ledger() == {"203.0.113.7/32": expires_at.replace(microsecond=0)}


def test_allowlisted_addresses_are_never_blocked() -> None:
    target = _ip_set()
    _logs({"10.1.2.3": 50, "203.0.113.7": 6})

    plan = _action(target, allowlist=["10.0.0.0/8"]).plan()

    assert plan.after["added"] == ["203.0.113.7/32"]
    assert "1 allowlisted offender(s) not blocked" in plan.note


def test_at_most_top_addresses_are_blocked_per_action() -> None:
    target = _ip_set()
    _logs({f"203.0.113.{i}": 5 + i for i in range(1, 6)})

    plan = _action(target, top=2).plan()

    assert plan.after["added"] == ["203.0.113.5/32", "203.0.113.4/32"]
    assert "3 more offender(s) over the threshold (top)" in plan.note


def test_addresses_under_the_threshold_or_outside_the_window_are_not_counted() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 4, "203.0.113.8": 5})
    _logs({"203.0.113.7": 10}, seconds_ago=600)  # before the alarm's 5-minute window

    plan = _action(target).plan()

    assert plan.after["added"] == ["203.0.113.8/32"]


def test_the_window_is_the_alarm_period_ending_when_it_fired() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 10}, seconds_ago=120)

    assert _action(target, _alarm(period=60)).plan().skip_reason == "nothing_to_block"
    assert _action(target, _alarm(period=300)).plan().after["added"] == ["203.0.113.7/32"]
    assert _action(target, _alarm(period=60), window="5m").plan().after["added"]


def test_lines_that_are_not_json_or_lack_the_address_are_skipped_and_counted() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 5}, extra=("not json", json.dumps({"path": "/"}), '{"ip": "nope"}'))

    plan = _action(target).plan()

    assert plan.after["added"] == ["203.0.113.7/32"]
    assert "3 line(s) skipped: not JSON or without a valid `ip`" in plan.note


def test_status_min_counts_only_requests_with_such_a_status() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 5}, status=200)
    _logs({"203.0.113.8": 5}, status=503)

    plan = _action(target, status_min=500).plan()

    assert plan.after["added"] == ["203.0.113.8/32"]


def test_addresses_already_in_the_set_are_not_added_again() -> None:
    target = _ip_set(["203.0.113.7/32", "10.0.0.0/8"])
    _logs({"203.0.113.7": 9, "10.1.2.3": 8, "203.0.113.8": 5})
    action = _action(target)

    plan = action.plan()
    action.apply(plan)

    assert plan.before == {"size": 2, "already_blocked": ["203.0.113.7/32", "10.1.2.3/32"]}
    assert plan.after["added"] == ["203.0.113.8/32"]
    assert _addresses(target) == ["203.0.113.7/32", "10.0.0.0/8", "203.0.113.8/32"]


def test_with_no_offender_over_the_threshold_there_is_nothing_to_block() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 4})

    plan = _action(target).plan()

    assert plan.skip_reason == "nothing_to_block"
    assert plan.after == {}


def _filler(count: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32" for i in range(count)]


def test_a_nearly_full_set_gets_only_the_busiest_that_fit() -> None:
    target = _ip_set(_filler(WAF_IP_SET_LIMIT - 2))
    _logs({"203.0.113.7": 9, "203.0.113.8": 8, "203.0.113.9": 7})
    action = _action(target)

    plan = action.plan()
    action.apply(plan)

    assert plan.after["added"] == ["203.0.113.7/32", "203.0.113.8/32"]
    assert "1 more offender(s) not blocked: the set reaches 10000 addresses" in plan.note
    assert len(_addresses(target)) == WAF_IP_SET_LIMIT


def test_a_full_set_is_at_cap() -> None:
    target = _ip_set(_filler(WAF_IP_SET_LIMIT))
    _logs({"203.0.113.7": 9})

    plan = _action(target).plan()

    assert plan.skip_reason == "at_cap"
    assert plan.note.startswith("IP set blocked-ips is full (10000 addresses)")


def test_an_ipv6_set_blocks_ipv6_offenders_and_skips_ipv4_ones() -> None:
    target = _ip_set(version="IPV6")
    _logs({"2001:db8::7": 6, "203.0.113.7": 9})
    action = _action(target)

    plan = action.plan()
    action.apply(plan)

    assert plan.after["added"] == ["2001:db8::7/128"]
    assert "1 IPv4 offender(s) skipped: the set holds IPv6 addresses" in plan.note
    assert _addresses(target) == ["2001:db8::7/128"]


# --- other writers ------------------------------------------------------------------------


def test_a_concurrent_writer_s_address_is_kept_when_the_lock_token_goes_stale() -> None:
    target = _ip_set(["192.0.2.1/32"])
    _logs({"203.0.113.7": 6})
    action = _action(target)
    plan = action.plan()
    calls = []

    def another_writer_first(**kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # between our GetIPSet and UpdateIPSet: our LockToken goes stale
            _other_writer_adds(target, "198.51.100.99/32")

    _hook("UpdateIPSet", another_writer_first)

    action.apply(plan)

    assert len(calls) == 2  # the first write was refused (WAFOptimisticLockException)
    assert _addresses(target) == ["192.0.2.1/32", "198.51.100.99/32", "203.0.113.7/32"]
    assert action.read_back() == {"size": 3, "added": ["203.0.113.7/32"]}


def test_a_lock_conflict_on_every_attempt_becomes_an_action_error() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 6})
    action = _action(target)
    plan = action.plan()

    def stale(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "WAFOptimisticLockException", "Message": "changed"}},
            "UpdateIPSet",
        )

    _hook("UpdateIPSet", stale)

    with pytest.raises(ActionError, match=r"attempt 5 of 5.*WAFOptimisticLockException"):
        action.apply(plan)
    assert _addresses(target) == []
    assert _ledger() == {}  # no expiry left for an address that was not blocked


def test_an_address_another_writer_added_since_the_plan_is_not_ours() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 6, "203.0.113.8": 5})
    action = _action(target)
    plan = action.plan()
    _other_writer_adds(target, "203.0.113.8/32")

    action.apply(plan)

    assert action.read_back()["added"] == ["203.0.113.7/32"]
    assert list(_ledger()) == ["203.0.113.7/32"]


# --- ledger, sweep, revert ----------------------------------------------------------------


def test_a_re_block_only_ever_extends_an_expiry() -> None:
    ledger = BlockLedger(BLOCKS_TABLE)
    soon, later = datetime(2030, 1, 1, 6, tzinfo=UTC), datetime(2030, 1, 1, 12, tzinfo=UTC)

    ledger.record(KEY, ["203.0.113.7/32"], soon, "first")
    ledger.record(KEY, ["203.0.113.7/32"], later, "second")
    ledger.record(KEY, ["203.0.113.7/32"], soon, "third")

    assert _ledger() == {"203.0.113.7/32": later}


def test_sweep_removes_only_expired_ledger_addresses_never_another_writer_s() -> None:
    target = _ip_set(["203.0.113.7/32", "203.0.113.8/32", "198.51.100.99/32", "10.0.0.0/8"])
    now = clock.now()
    ledger = BlockLedger(BLOCKS_TABLE)
    ledger.record(KEY, ["203.0.113.7/32"], now - timedelta(minutes=1), "expired")
    ledger.record(KEY, ["203.0.113.8/32"], now + timedelta(hours=1), "still blocked")
    ledger.record(KEY, ["10.1.2.3/32"], now - timedelta(hours=1), "inside another's /8")
    ledger.record(KEY, ["192.0.2.1/32"], now - timedelta(hours=1), "removed by hand")

    removed = BlockIps(target, BlockIpsParams()).sweep(now)

    assert removed == ["203.0.113.7/32"]
    assert _addresses(target) == ["203.0.113.8/32", "198.51.100.99/32", "10.0.0.0/8"]
    assert list(_ledger()) == ["203.0.113.8/32"]


def test_sweep_keeps_other_writers_entries_through_a_lock_conflict() -> None:
    target = _ip_set(["203.0.113.7/32"])
    BlockLedger(BLOCKS_TABLE).record(KEY, ["203.0.113.7/32"], clock.now(), "expired")
    calls = []

    def another_writer_first(**kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            _other_writer_adds(target, "198.51.100.99/32")

    _hook("UpdateIPSet", another_writer_first)

    assert BlockIps(target, BlockIpsParams()).sweep() == ["203.0.113.7/32"]
    assert _addresses(target) == ["198.51.100.99/32"]


def test_revert_takes_back_only_the_added_addresses() -> None:
    target = _ip_set(["192.0.2.1/32"])
    _logs({"203.0.113.7": 6, "203.0.113.8": 5})
    action = _action(target)
    plan = action.plan()
    action.apply(plan)
    after = action.read_back()
    _other_writer_adds(target, "198.51.100.99/32")

    reverting = BlockIps(target, BlockIpsParams())  # as revert.py builds it: no alarm
    reverting.revert(plan.before, after)

    assert _addresses(target) == ["192.0.2.1/32", "198.51.100.99/32"]
    assert _ledger() == {}
    assert reverting.read_back() == {"size": 2, "added": []}
    assert reverting.comparable(reverting.read()) == reverting.comparable(after)


# --- errors -------------------------------------------------------------------------------


def test_a_missing_ip_set_raises_target_not_found() -> None:
    _logs({"203.0.113.7": 6})
    target = IpSetTarget(
        ip_set="blocked-ips", id="a1b2c3d4-5678-90ab-cdef-EXAMPLE11111", log_group=LOG_GROUP
    )

    with pytest.raises(TargetNotFound, match=r"IP set blocked-ips \(REGIONAL, .*\) does not"):
        _action(target).plan()


def test_a_missing_log_group_raises_target_not_found() -> None:
    target = _ip_set()

    with pytest.raises(TargetNotFound, match=f"log group {LOG_GROUP} does not exist"):
        _action(target).plan()


def test_without_the_blocks_table_nothing_is_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 6})
    action = _action(target)
    plan = action.plan()
    monkeypatch.delenv("BLOCKS_TABLE_NAME")

    with pytest.raises(ActionError, match="BLOCKS_TABLE_NAME is not set"):
        action.apply(plan)
    assert _addresses(target) == []


def test_an_update_error_becomes_an_action_error() -> None:
    target = _ip_set()
    _logs({"203.0.113.7": 6})
    action = _action(target)
    plan = action.plan()

    def refuse(**kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "WAFLimitsExceededException", "Message": "too many"}},
            "UpdateIPSet",
        )

    _hook("UpdateIPSet", refuse)

    with pytest.raises(ActionError, match="WAFLimitsExceededException"):
        action.apply(plan)


def test_a_cloudfront_ip_set_is_written_at_us_east_1_from_a_function_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a CloudFront-scope set (WAF keeps those at us-east-1) and a function in eu-west-1
    summary = boto3.client("wafv2", region_name="us-east-1").create_ip_set(
        Name="edge-blocks", Scope="CLOUDFRONT", IPAddressVersion="IPV4", Addresses=[]
    )["Summary"]
    target = IpSetTarget(
        ip_set="edge-blocks", id=summary["Id"], scope="CLOUDFRONT", log_group=LOG_GROUP
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    reset_clients()
    create_blocks_table(BLOCKS_TABLE)  # the stack's tables are in the function's region
    _logs({"203.0.113.7": 6})

    # When it blocks an address
    action = _action(target)
    action.apply(action.plan())

    # Then the set holds it (a call from eu-west-1 would be refused: the fidelity rule)
    response = boto3.client("wafv2", region_name="us-east-1").get_ip_set(
        Name="edge-blocks", Scope="CLOUDFRONT", Id=summary["Id"]
    )
    assert response["IPSet"]["Addresses"] == ["203.0.113.7/32"]


# --- declarations -------------------------------------------------------------------------


def test_it_is_risky_and_never_takes_its_target_from_the_alarm() -> None:
    assert BlockIps.risky is True
    assert BlockIps.target_from_alarm(_alarm()) is None


def test_it_declares_iam_on_the_named_set_and_log_group() -> None:
    target = IpSetTarget(ip_set="edge", id="abc", scope="CLOUDFRONT", log_group="/api/access")

    permissions = {p.actions: p.resources for p in BlockIps.permissions(target)}

    assert permissions[("wafv2:GetIPSet", "wafv2:UpdateIPSet")] == (
        "arn:{partition}:wafv2:us-east-1:{account}:global/ipset/edge/abc",
    )
    assert permissions[("logs:StartQuery",)] == (
        "arn:{partition}:logs:{region}:{account}:log-group:/api/access",
        "arn:{partition}:logs:{region}:{account}:log-group:/api/access:*",
    )
    assert not any(action.startswith("dynamodb:") for actions in permissions for action in actions)
    assert ("wafv2:ListIPSets",) not in permissions
    assert target.resource_key == "wafv2:ipset/CLOUDFRONT/edge"


def test_without_an_id_it_looks_the_set_up_by_name() -> None:
    target = IpSetTarget(ip_set="edge", log_group="/api/access")

    permissions = {p.actions: p for p in BlockIps.permissions(target)}

    assert permissions[("wafv2:GetIPSet", "wafv2:UpdateIPSet")].resources == (
        "arn:{partition}:wafv2:{region}:{account}:regional/ipset/edge/*",
    )
    assert permissions[("wafv2:ListIPSets",)].resources == ("*",)
