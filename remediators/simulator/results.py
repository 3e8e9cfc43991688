"""What a scenario run produced: its events and how each ended, the timeline, the checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediators.core.audit import AuditRecord

__all__ = ["Check", "Entry", "EventResult", "Report"]


@dataclass
class EventResult:
    """One delivered event and how it ended."""

    event_id: str
    alarm: str | None
    state: str | None
    outcome: str
    reason: str | None = None
    policy: str | None = None
    action: str | None = None
    target: str | None = None
    changes: list[str] = field(default_factory=list)
    before: Any = None
    after: Any = None
    error: str | None = None
    routes: list[str] = field(default_factory=list)
    attempts: int = 0
    dead_letter: str | None = None
    audit: dict[str, Any] | None = None
    notifications: list[dict[str, str]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    # Delivery to the last handler's return (the change read back, when there is one).
    elapsed_ms: float = 0.0
    # Calls the deployed role would not allow.
    denied: list[str] = field(default_factory=list)

    def take_record(self, record: AuditRecord) -> None:
        """Fill in what the event's audit record says (keeping an error already seen)."""
        self.audit = record.model_dump(mode="json")
        self.reason, self.policy, self.action = record.reason, record.policy, record.action
        self.target, self.changes = record.target, record.changes
        self.before, self.after = record.before, record.after
        self.error = self.error or record.error

    @property
    def label(self) -> str:
        """`skipped:reason` for skips, else the outcome."""
        return (
            f"skipped:{self.reason}" if self.outcome == "skipped" and self.reason else self.outcome
        )


@dataclass
class Entry:
    """One line of the timeline; event entries carry the event's result."""

    kind: str
    text: str
    event: EventResult | None = None


@dataclass
class Check:
    """One expectation and whether it held."""

    check: str
    expected: Any
    actual: Any
    passed: bool


@dataclass
class Report:
    """Everything a scenario run produced."""

    scenario: str
    description: str
    stack: str = ""
    timeline: list[Entry] = field(default_factory=list)
    events: list[EventResult] = field(default_factory=list)
    resources_before: dict[str, Any] = field(default_factory=dict)
    resources_after: dict[str, Any] = field(default_factory=dict)
    expectations: list[Check] = field(default_factory=list)
    verifications: list[dict[str, Any]] = field(default_factory=list)
    # Per deployed function (logical id): each grant of its role, and whether a call used it.
    permissions: dict[str, dict[str, bool]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every expectation held."""
        return all(check.passed for check in self.expectations)

    def note(self, kind: str, text: str, event: EventResult | None = None) -> None:
        """Add an entry to the timeline."""
        self.timeline.append(Entry(kind, text, event))
