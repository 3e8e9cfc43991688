"""`waf.block_ips`: block the addresses that flood an API in a WAFv2 IP set, for a while
(runbook "Security incident": block suspicious IPs). Risky by default: a policy must ask for
approval or say `approval: never`.

Offenders come from the API's access logs in CloudWatch Logs (JSON lines with the client
address in `ip_field`, as API Gateway writes `$context.identity.sourceIp`), over the alarm's
window: its metric period (or `window`), ending when the alarm changed state. A Logs Insights
query reads at most the latest 10,000 lines of the window: the counts are those of a sample,
the same idea as WAF's sampled requests (in a flood each address keeps its share of the
traffic, which is what the ranking needs; a count is at most the address's real number).
Addresses with at least `min_requests` lines (counting only `status >= status_min`, if set)
are blocked, busiest first: at most `top` per action, never an allowlisted one, never past
WAF's 10,000 addresses per set (a full set is `at_cap`, escalated).

UpdateIPSet replaces the whole set and needs the LockToken of a GetIPSet, so every write
re-reads the set and merges into what is there, retrying on WAFOptimisticLockException: other
writers' entries are never lost. Each block expires: the blocks ledger
(`remediators.core.blocks`, table BLOCKS_TABLE_NAME) records when, before the set is written,
and `BlockIps.sweep` removes expired addresses, only those the ledger holds. `revert` takes
back exactly the addresses the action added, whatever else the set gained since.

One module per action (the registry's rule), hence its length: the offender query, the
merge-and-retry write, the ledger and the sweep belong to this action alone.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, ClassVar, Literal

from botocore.exceptions import ClientError
from pydantic import Field, field_validator

from remediators.core import clock
from remediators.core.aws import client
from remediators.core.blocks import BlockLedger
from remediators.core.errors import ActionError, TargetNotFound
from remediators.core.events import AlarmDetail
from remediators.core.policy import Duration
from remediators.core.registry import Action, Params, Permission, Plan, Target, register

__all__ = [
    "DEFAULT_WINDOW",
    "LOG_SAMPLE_LIMIT",
    "WAF_IP_SET_LIMIT",
    "BlockIps",
    "BlockIpsParams",
    "IpSetTarget",
]

logger = logging.getLogger(__name__)

# Addresses per WAFv2 IP set (a hard limit), and lines per Logs Insights query result.
WAF_IP_SET_LIMIT = 10_000
LOG_SAMPLE_LIMIT = 10_000
# The window when neither the policy nor the alarm gives one.
DEFAULT_WINDOW = timedelta(minutes=5)
# Logs Insights supports more, but moto 5.2's parser executes only fields/filter/sort/limit.
_QUERY = f"fields @message | sort @timestamp desc | limit {LOG_SAMPLE_LIMIT}"
_QUERY_POLLS, _QUERY_POLL_SECONDS = 60, 1.0
_QUERY_ENDED = frozenset({"Failed", "Cancelled", "Timeout", "Unknown"})
# UpdateIPSet with a stale LockToken: re-read and retry, jittered exponential backoff.
_LOCK_ATTEMPTS, _LOCK_BACKOFF_SECONDS = 5, 0.5
_NAME = r"^[\w-]+$"

_Address = IPv4Address | IPv6Address
_Network = IPv4Network | IPv6Network
# Where WAF answers for CloudFront (its IAM ARNs say so too: `arn_template`).
_CLOUDFRONT_REGION = "us-east-1"


class IpSetTarget(Target):
    """A WAFv2 IP set (name, and id unless it is to be looked up by name), and the log group
    of the access logs of the API it protects (where offenders are counted)."""

    ip_set: str = Field(min_length=1, max_length=128, pattern=_NAME)
    id: str | None = Field(default=None, min_length=1, max_length=36, pattern=r"^[a-zA-Z0-9-]+$")
    scope: Literal["REGIONAL", "CLOUDFRONT"] = "REGIONAL"
    log_group: str = Field(min_length=1, max_length=512, pattern=r"^[.\-_/#A-Za-z0-9]+$")
    # The API Gateway REST API the set protects: names it for the `api-5xx` alarm preset.
    api: str | None = Field(default=None, min_length=1, max_length=1024)

    @property
    def resource_key(self) -> str:
        return f"wafv2:ipset/{self.scope}/{self.ip_set}"

    def arn_template(self) -> str:
        """The IP set's ARN with {partition} and {account} (CLOUDFRONT sets are global, in
        us-east-1)."""
        if self.scope == "CLOUDFRONT":
            prefix = f"arn:{{partition}}:wafv2:{_CLOUDFRONT_REGION}:{{account}}:global"
        else:
            prefix = "arn:{partition}:wafv2:{region}:{account}:regional"
        return f"{prefix}/ipset/{self.ip_set}/{self.id or '*'}"


class BlockIpsParams(Params):
    """Who is blocked (at least `min_requests` in the window, at most `top` per action, never
    the `allowlist`) and for how long (`block_for`)."""

    top: int = Field(default=20, ge=1, le=1000)
    min_requests: int = Field(default=100, ge=1)
    block_for: Duration = timedelta(hours=6)
    allowlist: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    # Default: the alarm's metric period, else DEFAULT_WINDOW.
    window: Duration | None = None
    # The access-log field with the client address (a dotted path reaches nested fields).
    ip_field: str = Field(default="ip", min_length=1, max_length=256)
    # Count only requests whose `status` is at least this (e.g. 400: failed ones).
    status_min: int | None = Field(default=None, ge=100, le=599)

    @field_validator("block_for", "window")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value


@dataclass
class _Selection:
    """Offenders over the threshold, sorted busiest first, by what becomes of them."""

    block: list[tuple[str, int]] = field(default_factory=list)
    already_blocked: list[str] = field(default_factory=list)
    allowlisted: int = 0
    other_version: int = 0
    over_top: int = 0
    over_cap: int = 0


@register
class BlockIps(Action[BlockIpsParams, IpSetTarget]):
    """Block the busiest client addresses of the alarm's window in a WAFv2 IP set."""

    name: ClassVar[str] = "waf.block_ips"
    summary: ClassVar[str] = (
        "Block the addresses with the most requests in the alarm's window (from the API's "
        "access logs) in a WAF IP set, for `block_for`."
    )
    params_model = BlockIpsParams
    target_model = IpSetTarget
    risky: ClassVar[bool] = True
    expires: ClassVar[bool] = True

    def __init__(
        self, target: IpSetTarget, params: BlockIpsParams, alarm: AlarmDetail | None = None
    ) -> None:
        super().__init__(target, params, alarm)
        # The addresses this action added (by `apply`) or took back (by `revert`): what
        # `read_back` reports.
        self._added: list[str] = []
        self._ip_set_id: str | None = None

    @classmethod
    def permissions(cls, target: IpSetTarget | None) -> list[Permission]:
        why: str | None
        if target is None:
            why = "the policy names no IP set (this action acts only on a named one)"
            ip_sets: tuple[str, ...] = (
                "arn:{partition}:wafv2:{region}:{account}:regional/ipset/*",
                "arn:{partition}:wafv2:us-east-1:{account}:global/ipset/*",
            )
            group = "arn:{partition}:logs:{region}:{account}:log-group:*"
            log_groups: tuple[str, ...] = (group,)
        else:
            why = None if target.id else "the IP set's id is looked up by its name"
            ip_sets = (target.arn_template(),)
            group = f"arn:{{partition}}:logs:{{region}}:{{account}}:log-group:{target.log_group}"
            log_groups = (group, f"{group}:*")
        return [
            Permission(
                actions=("wafv2:GetIPSet", "wafv2:UpdateIPSet"),
                resources=ip_sets,
                why_wildcard=why,
            ),
            Permission(
                actions=("logs:StartQuery",),
                resources=log_groups,
                why_wildcard=why
                or "a log group's ARN as IAM matches it ends in `:*` (its log streams)",
            ),
            Permission(
                actions=("logs:GetQueryResults",),
                resources=("*",),
                why_wildcard="GetQueryResults takes a query id and supports no resource ARN",
            ),
            # The blocks ledger's table is the stack's: it grants that itself.
        ] + (
            []
            if target is not None and target.id
            else [
                Permission(
                    actions=("wafv2:ListIPSets",),
                    resources=("*",),
                    why_wildcard="ListIPSets (to find the set's id by name) has no resource ARN",
                )
            ]
        )

    @classmethod
    def target_from_alarm(cls, alarm: AlarmDetail) -> IpSetTarget | None:
        return None  # no alarm dimension names an IP set: the policy always does

    # --- read -------------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        """The set's size, and which of the addresses this action added are in it (never the
        whole set: audit records stay small)."""
        ip_set, _ = self._get_ip_set()
        present = _AddressSet(ip_set["Addresses"])
        return {
            "size": len(ip_set["Addresses"]),
            "added": [address for address in self._added if present.has(address)],
        }

    def comparable(self, state: dict[str, Any]) -> dict[str, Any]:
        """Nothing: other writers change the set all the time, and a revert takes back only
        this action's addresses that are still there, so no change since makes it unsafe."""
        return {}

    # --- plan -------------------------------------------------------------------------------

    def plan(self) -> Plan:
        ip_set, _ = self._get_ip_set()
        current = list(ip_set["Addresses"])
        version = 6 if ip_set.get("IPAddressVersion") == "IPV6" else 4
        start, end = self._window()
        lines = self._sample(start, end)
        counts, skipped = self._count(lines)
        selection = self._select(counts, _AddressSet(current), version, len(current))
        before = {"size": len(current), "already_blocked": selection.already_blocked}
        notes = self._notes(
            selection, version, lines=len(lines), skipped=skipped, start=start, end=end
        )
        if not selection.block:
            full = selection.over_cap > 0
            if full:
                notes.insert(
                    0,
                    f"IP set {self.target.ip_set} is full ({WAF_IP_SET_LIMIT} addresses): "
                    f"{selection.over_cap} offender(s) not blocked",
                )
            return Plan(
                before=before,
                skip_reason="at_cap" if full else "nothing_to_block",
                note="; ".join(notes),
            )
        expires_at = clock.now() + self.params.block_for
        added = [address for address, _ in selection.block]
        after = {
            "added": added,
            "expires_at": expires_at.isoformat(),
            "requests": dict(selection.block),
        }
        changes = [
            f"IP set {self.target.ip_set}: block {len(added)} address(es) until "
            f"{expires_at:%Y-%m-%d %H:%M} UTC ({len(current)} -> {len(current) + len(added)})",
            *(f"block {address} ({count} requests)" for address, count in selection.block),
        ]
        return Plan(before=before, after=after, changes=changes, note="; ".join(notes))

    def _window(self) -> tuple[datetime, datetime]:
        """The alarm's window: its metric period (or `window`), ending at its state change."""
        end = self.alarm.state.timestamp if self.alarm is not None else clock.now()
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        length = self.params.window
        if length is None and self.alarm is not None:
            periods = [
                query.metric_stat.period
                for query in self.alarm.configuration.metrics
                if query.metric_stat is not None
            ]
            length = timedelta(seconds=max(periods)) if periods else None
        return end - (length or DEFAULT_WINDOW), end

    def _sample(self, start: datetime, end: datetime) -> list[str]:
        """The @message of at most LOG_SAMPLE_LIMIT of the latest lines in [start, end]."""
        logs = client("logs")
        group = self.target.log_group
        try:
            query_id = logs.start_query(
                logGroupName=group,
                startTime=math.floor(start.timestamp()),
                endTime=math.ceil(end.timestamp()),
                queryString=_QUERY,
            )["queryId"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ResourceNotFoundException":
                raise TargetNotFound(
                    f"log group {group} does not exist: it should hold the access logs the "
                    "offenders are counted in"
                ) from error
            raise ActionError.from_client_error(f"StartQuery {group}", error) from error
        for _ in range(_QUERY_POLLS):
            try:
                response = logs.get_query_results(queryId=query_id)
            except ClientError as error:
                raise ActionError.from_client_error(f"GetQueryResults {group}", error) from error
            status = response["status"]
            if status == "Complete":
                return [
                    cell["value"]
                    for row in response["results"]
                    for cell in row
                    if cell.get("field") == "@message" and "value" in cell
                ]
            if status in _QUERY_ENDED:
                raise ActionError(f"the Logs Insights query on {group} ended {status}")
            clock.sleep(_QUERY_POLL_SECONDS)
        raise ActionError(
            f"the Logs Insights query on {group} did not complete within "
            f"{_QUERY_POLLS * _QUERY_POLL_SECONDS:.0f} s"
        )

    def _count(self, lines: Iterable[str]) -> tuple[Counter[_Address], int]:
        """Requests per client address; and how many lines could not be used (not JSON, no
        valid address, or no valid status when `status_min` is set)."""
        counts: Counter[_Address] = Counter()
        skipped = 0
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            address = _client_address(_field(entry, self.params.ip_field))
            if address is None:
                skipped += 1
                continue
            if self.params.status_min is not None:
                status = _status(_field(entry, "status"))
                if status is None:
                    skipped += 1
                    continue
                if status < self.params.status_min:
                    continue
            counts[address] += 1
        return counts, skipped

    def _select(
        self, counts: Counter[_Address], present: _AddressSet, version: int, size: int
    ) -> _Selection:
        selection = _Selection()
        room = max(0, WAF_IP_SET_LIMIT - size)
        limit = min(self.params.top, room)
        # Busiest first; equal counts in address order, so a plan is reproducible.
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0].version, item[0]))
        for address, count in ranked:
            if count < self.params.min_requests:
                break
            cidr = f"{address}/{address.max_prefixlen}"
            if address.version != version:
                selection.other_version += 1
            elif any(
                address.version == network.version and address in network
                for network in self.params.allowlist
            ):
                selection.allowlisted += 1
            elif present.covers(address):
                if len(selection.already_blocked) < self.params.top:
                    selection.already_blocked.append(cidr)
            elif len(selection.block) < limit:
                selection.block.append((cidr, count))
            elif len(selection.block) < self.params.top:
                selection.over_cap += 1
            else:
                selection.over_top += 1
        return selection

    def _notes(
        self,
        selection: _Selection,
        version: int,
        *,
        lines: int,
        skipped: int,
        start: datetime,
        end: datetime,
    ) -> list[str]:
        sample = f"{lines} access-log line(s) of {self.target.log_group} from {start:%H:%M:%S}"
        sample += f" to {end:%H:%M:%S} UTC"
        if lines >= LOG_SAMPLE_LIMIT:
            sample += f" (a sample: the latest {LOG_SAMPLE_LIMIT})"
        notes = [sample]
        if skipped:
            wanted = f"a valid `{self.params.ip_field}`"
            if self.params.status_min is not None:
                wanted += " and `status`"
            notes.append(f"{skipped} line(s) skipped: not JSON or without {wanted}")
        if selection.allowlisted:
            notes.append(f"{selection.allowlisted} allowlisted offender(s) not blocked")
        if selection.other_version:
            other = "IPv4" if version == 6 else "IPv6"
            notes.append(
                f"{selection.other_version} {other} offender(s) skipped: the set holds "
                f"IPv{version} addresses"
            )
        if selection.over_top:
            notes.append(f"{selection.over_top} more offender(s) over the threshold (top)")
        if selection.over_cap and selection.block:
            notes.append(
                f"{selection.over_cap} more offender(s) not blocked: the set reaches "
                f"{WAF_IP_SET_LIMIT} addresses"
            )
        return notes

    # --- change -----------------------------------------------------------------------------

    def apply(self, plan: Plan) -> None:
        wanted = list(plan.after.get("added", []))
        if not wanted:
            return
        ledger = BlockLedger.from_env()  # before anything changes: no block without expiry
        key = self.target.resource_key
        expires_at = datetime.fromisoformat(plan.after["expires_at"])
        # The expiry first: a crash after it leaves an entry for an address not blocked (its
        # sweep removes nothing), never a block that nothing will lift. A failure (of the
        # ledger too, after some entries) forgets the entries of addresses not blocked.
        try:
            ledger.record(key, wanted, expires_at, self._origin())
            added = self._write(lambda current: _merged(current, wanted, self.target.ip_set))
        except Exception:
            self._forget_unblocked(ledger, wanted)
            raise
        # Planned but not added (another writer added it meanwhile, or no room): not ours.
        not_added = [address for address in wanted if address not in added]
        if not_added:
            ledger.forget(key, not_added)
        self._added = added

    def revert(self, before: dict[str, Any], after: dict[str, Any] | None = None) -> None:
        """Take back the addresses the action added (`after["added"]`) that are still in the
        set, and forget their expiries; everything else in the set stays."""
        if after is None:
            raise ActionError(
                f"{self.name} reverts from its recorded after-state (the addresses it added)"
            )
        added = list(after.get("added", []))
        ledger = BlockLedger.from_env()
        if added:
            self._write(lambda current: _without(current, added))
            ledger.forget(self.target.resource_key, added)
        self._added = added

    def sweep(self, now: datetime | None = None) -> list[str]:
        """Unblock the addresses whose block expired by `now` (default: the clock): remove
        from the set only addresses the ledger holds as expired, then forget them. Returns the
        addresses removed. Run it under the resource's lock, like any change to the set."""
        now = now or clock.now()
        ledger = BlockLedger.from_env()
        key = self.target.resource_key
        expired = ledger.expired(key, now)
        if not expired:
            return []
        removed = self._write(lambda current: _without(current, expired))
        # Also those no longer in the set (someone removed them): nothing left to lift.
        ledger.forget(key, expired, expired_by=now)
        return removed

    def expire(self, now: datetime) -> list[str]:
        return self.sweep(now)

    def _write(
        self, change: Callable[[list[str]], tuple[list[str] | None, list[str]]]
    ) -> list[str]:
        """Read the set, compute (new addresses or None for no write, result) with `change`
        and write it with the LockToken read; on WAFOptimisticLockException (another writer
        came first) do it all again, from a fresh read. Returns the result of the change."""
        name = self.target.ip_set
        for attempt in range(1, _LOCK_ATTEMPTS + 1):
            ip_set, lock_token = self._get_ip_set()
            addresses, result = change(list(ip_set["Addresses"]))
            if addresses is None:
                return result
            request: dict[str, Any] = {
                "Name": name,
                "Scope": self.target.scope,
                "Id": self._id(),
                "Addresses": addresses,
                "LockToken": lock_token,
            }
            if ip_set.get("Description"):
                request["Description"] = ip_set["Description"]  # UpdateIPSet replaces it
            try:
                self._waf().update_ip_set(**request)
            except ClientError as error:
                code = error.response["Error"]["Code"]
                if code == "WAFOptimisticLockException" and self._landed(addresses, error):
                    return result
                if code == "WAFOptimisticLockException" and attempt < _LOCK_ATTEMPTS:
                    logger.info(
                        "IP set %s changed while written (attempt %d): retrying", name, attempt
                    )
                    clock.sleep(random.uniform(0, _LOCK_BACKOFF_SECONDS * 2 ** (attempt - 1)))
                    continue
                if code == "WAFNonexistentItemException":
                    raise TargetNotFound(self._missing()) from error
                raise ActionError.from_client_error(
                    f"UpdateIPSet {name} (attempt {attempt} of {_LOCK_ATTEMPTS})", error
                ) from error
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _landed(self, addresses: list[str], error: ClientError) -> bool:
        """Whether a write that botocore retried went through on an earlier attempt whose answer
        was lost (a read timeout, a 5xx after the change), so that the retry met the write's
        own change as a stale LockToken: the set holds exactly the addresses it wrote."""
        if not error.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            return False
        ip_set, _ = self._get_ip_set()
        return _AddressSet(ip_set["Addresses"]).exact == _AddressSet(addresses).exact

    def _get_ip_set(self) -> tuple[dict[str, Any], str]:
        try:
            response = self._waf().get_ip_set(
                Name=self.target.ip_set, Scope=self.target.scope, Id=self._id()
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "WAFNonexistentItemException":
                raise TargetNotFound(self._missing()) from error
            raise ActionError.from_client_error(f"GetIPSet {self.target.ip_set}", error) from error
        return response["IPSet"], response["LockToken"]

    def _waf(self) -> Any:
        """WAF for the set's scope: CloudFront's sets answer only at us-east-1 ("For all calls,
        use the Region endpoint us-east-1",
        https://docs.aws.amazon.com/waf/latest/APIReference/API_CreateIPSet.html), regional
        ones in the function's region."""
        return client("wafv2", _CLOUDFRONT_REGION if self.target.scope == "CLOUDFRONT" else None)

    def _id(self) -> str:
        """The set's id: from the policy, else found by name (once per action)."""
        if self.target.id:
            return self.target.id
        if self._ip_set_id is None:
            paginate = self._waf().list_ip_sets
            kwargs: dict[str, Any] = {"Scope": self.target.scope, "Limit": 100}
            while self._ip_set_id is None:
                page = paginate(**kwargs)
                for summary in page.get("IPSets", []):
                    if summary["Name"] == self.target.ip_set:
                        self._ip_set_id = str(summary["Id"])
                if self._ip_set_id is None and not page.get("NextMarker"):
                    raise TargetNotFound(self._missing())
                kwargs["NextMarker"] = page.get("NextMarker")
        return self._ip_set_id

    def _forget_unblocked(self, ledger: BlockLedger, wanted: list[str]) -> None:
        """After a failed write: forget the planned expiries of addresses not in the set.
        Best effort; an entry left behind lifts nothing that is not there."""
        try:
            ip_set, _ = self._get_ip_set()
            present = _AddressSet(ip_set["Addresses"])
            ledger.forget(self.target.resource_key, [a for a in wanted if not present.has(a)])
        except Exception:
            logger.exception("could not tidy the blocks ledger of %s", self.target.resource_key)

    def _missing(self) -> str:
        return (
            f"IP set {self.target.ip_set} ({self.target.scope}, id {self.target.id}) does not exist"
        )

    def _origin(self) -> str:
        """What asked for the block, for the ledger: the alarm's state change."""
        if self.alarm is None:
            return f"manual@{clock.now().isoformat()}"
        return f"{self.alarm.alarm_name}@{self.alarm.state.timestamp.isoformat()}"


class _AddressSet:
    """The addresses of an IP set, for membership (exact CIDR) and cover (inside any CIDR)."""

    def __init__(self, addresses: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.wide: list[_Network] = []
        for text in addresses:
            network = _network(text)
            if network is None:
                continue
            self.exact.add(str(network))
            if network.prefixlen < network.max_prefixlen:
                self.wide.append(network)

    def has(self, cidr: str) -> bool:
        """Whether `cidr` is itself an entry of the set."""
        network = _network(cidr)
        return network is not None and str(network) in self.exact

    def covers(self, address: _Address) -> bool:
        """Whether the set blocks `address` already (its /32 or /128, or a wider entry)."""
        if f"{address}/{address.max_prefixlen}" in self.exact:
            return True
        return any(n.version == address.version and address in n for n in self.wide)


def _merged(current: list[str], wanted: list[str], name: str) -> tuple[list[str] | None, list[str]]:
    """`current` plus the `wanted` addresses it lacks, as room allows: (addresses, added)."""
    present = _AddressSet(current)
    missing = [cidr for cidr in wanted if not present.has(cidr)]
    room = max(0, WAF_IP_SET_LIMIT - len(current))
    if missing and not room:
        raise ActionError(
            f"IP set {name} filled up ({WAF_IP_SET_LIMIT} addresses) since the plan: "
            f"{len(missing)} address(es) not blocked"
        )
    added = missing[:room]
    return (current + added if added else None), added


def _without(current: list[str], remove: list[str]) -> tuple[list[str] | None, list[str]]:
    """`current` without the entries equal to a `remove` CIDR: (addresses, removed)."""
    dropped = {str(n) for n in map(_network, remove) if n is not None}
    kept = [text for text in current if str(_network(text)) not in dropped]
    if len(kept) == len(current):
        return None, []
    present = _AddressSet(current)
    return kept, [cidr for cidr in remove if present.has(cidr)]


def _network(text: str) -> _Network | None:
    try:
        return ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _client_address(value: object) -> _Address | None:
    """A client address from a log field; IPv4-mapped IPv6 addresses as IPv4."""
    if not isinstance(value, str):
        return None
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _status(value: object) -> int | None:
    """An HTTP status from a log field (API Gateway writes it as a string)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _field(entry: object, path: str) -> object:
    """`entry[path]`, or for a dotted path the nested field (`identity.sourceIp`)."""
    if not isinstance(entry, dict):
        return None
    if path in entry:
        return entry[path]
    value: object = entry
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
