"""How the operator commands print what they found."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from remediators.core.errors import AutoremediateError

__all__ = ["format_approvals", "parse_since"]


def format_approvals(approvals: list[dict[str, Any]]) -> str:
    """One block per approval: id, status, deadline, what would change."""
    if not approvals:
        return "no approvals"
    lines = []
    for approval in approvals:
        request = approval["request"]
        decided = (
            f" by {approval['user_agent']} from {approval['source_ip']}"
            if approval.get("source_ip")
            else ""
        )
        lines.append(
            f"{approval['approval_id']}  {approval['status']}{decided}  until "
            f"{approval['deadline']:%Y-%m-%d %H:%M:%S} UTC  {request.action} on {request.target}"
        )
        lines += [f"    {change}" for change in request.plan.changes]
    return "\n".join(lines)


def parse_since(text: str) -> timedelta:
    """`30m`, `6h`, `1d`, ... as a timedelta (the policy file's duration syntax)."""
    from pydantic import TypeAdapter, ValidationError

    from remediators.core.policy import Duration

    try:
        value: Any = TypeAdapter(Duration).validate_python(text)
    except ValidationError as error:
        raise AutoremediateError(f"--since: {error.errors()[0]['msg']}") from None
    return value  # type: ignore[no-any-return]
