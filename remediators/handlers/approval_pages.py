"""The approval endpoint's pages: one HTML shell made for a phone first, and what each page
says (confirm a decision, the decision taken, a refused link).

No script at all; one inline stylesheet, allowed by its hash in the Content-Security-Policy
(https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Content-Security-Policy/style-src),
so the policy can forbid everything else. The favicon is an empty data URI: the browser asks
the function for nothing but the page.
"""

from __future__ import annotations

import base64
import hashlib
import html
from datetime import datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response

from remediators.core.approval import ApprovalRequest, Verdict
from remediators.core.approval_words import (
    Where,
    changed_settings,
    headline,
    stage_in_words,
    target_in_words,
    time_left,
)

__all__ = ["confirm_page", "decided_page", "page", "refused_page"]

_STYLE = """
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;
--changed:#fff8c5;--go:#1a7f37;--stop:#cf222e}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;
--line:#3d444d;--changed:#3b2e00}}
*{box-sizing:border-box}
body{margin:0;font:1.0625rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
main{max-width:40rem;margin:0 auto;padding:1rem}
h1{font-size:1.375rem;line-height:1.3;margin:.5rem 0 1rem;overflow-wrap:anywhere}
p,li,td,th,dd{overflow-wrap:anywhere}
.stage{font-weight:600;margin:0 0 .25rem}
.muted{color:var(--muted)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem .75rem;margin:0 0 1rem}
dt{color:var(--muted)}dd{margin:0}
table{width:100%;border-collapse:collapse;margin:0 0 1rem;table-layout:fixed}
th,td{text-align:left;padding:.375rem .5rem;border-bottom:1px solid var(--line);
vertical-align:top}
tr.changed td{background:var(--changed);font-weight:600}
.decide{display:flex;flex-direction:column;gap:1rem;margin:1.5rem 0}
button{width:100%;min-height:3.25rem;font:inherit;font-weight:600;border-radius:.5rem;
cursor:pointer;padding:.75rem 1rem}
button.approve{background:var(--go);color:#fff;border:0}
button.reject{background:transparent;color:var(--stop);border:2px solid var(--stop)}
.outcome{font-size:1.25rem;font-weight:600}
""".strip()
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Frame-Options": "DENY",
    # The page carries signed forms and a decision's outcome: never cached.
    "Cache-Control": "no-store",
}


def page(status: int, title: str, body: str) -> Response[str]:
    """A whole page: the shell, `title` as its heading, `body` (HTML, already escaped)."""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(status_code=status, body=document, headers=dict(HEADERS))


def confirm_page(
    approval: dict[str, Any], where: Where, now: datetime, forms: dict[Verdict, dict[str, str]]
) -> Response[str]:
    """What would change, where, why, until when; a button per decision (signed forms)."""
    request: ApprovalRequest = approval["request"]
    buttons = "".join(
        _form(verdict, fields, label)
        for verdict, label, fields in (
            ("approve", _approve_label(request), forms["approve"]),
            ("reject", "Reject: change nothing", forms["reject"]),
        )
    )
    body = (
        _stage(request)
        + _facts(request, where)
        + _changes(request)
        + f"<p>Decide by <b>{approval['deadline']:%Y-%m-%d %H:%M} UTC</b> "
        f"({time_left(approval['deadline'], now)}). After that nothing is applied.</p>"
        f'<div class="decide">{buttons}</div>'
    )
    return page(200, headline(request), body)


def decided_page(approval: dict[str, Any], where: Where) -> Response[str]:
    """The decision taken on this approval: what, by whom (address and browser), when."""
    request: ApprovalRequest = approval["request"]
    approved = approval["status"] == "approved"
    if approved and request.stage == "restore":
        what = "Approved: the restore runs now. A second approval will ask before the cutover."
    elif approved:
        what = "Approved: the change is being applied."
    else:
        what = "Rejected: nothing will be changed."
    when = approval.get("decided_at") or "?"
    by = approval.get("source_ip") or "?"
    agent = approval.get("user_agent") or "?"
    decided = (("Decided", _when(when)), ("From", by), ("Browser", agent))
    body = (
        _stage(request)
        + f'<p class="outcome">{html.escape(what)}</p>'
        + _facts(request, where, decided)
        + _changes(request)
    )
    return page(
        200, f"{'Approved' if approved else 'Rejected'}: {target_in_words(request.target)}", body
    )


def refused_page(status: int, why: str, next_step: str) -> Response[str]:
    """A link that cannot be used: why, that nothing changed, and what to do instead."""
    body = (
        f"<p>{html.escape(why)}.</p><p>Nothing was changed.</p>"
        f'<p class="muted">{html.escape(next_step)}</p>'
    )
    return page(status, "This link cannot be used", body)


def _approve_label(request: ApprovalRequest) -> str:
    if request.stage == "restore":
        return "Approve: start the restore"
    if request.stage == "cutover":
        return "Approve: switch to the restored table"
    return "Approve: apply the change"


def _form(verdict: str, fields: dict[str, str], label: str) -> str:
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    return (
        f'<form method="post" action="/">{inputs}'
        f'<button type="submit" class="{verdict}">{html.escape(label)}</button></form>'
    )


def _stage(request: ApprovalRequest) -> str:
    stage = stage_in_words(request)
    return f'<p class="stage">{html.escape(stage)}</p>' if stage else ""


def _facts(request: ApprovalRequest, where: Where, first: tuple[tuple[str, str], ...] = ()) -> str:
    rows = (
        *first,
        ("Resource", target_in_words(request.target)),
        ("Where", str(where)),
        ("Why", f"alarm {request.alarm}: {request.alarm_reason or 'in ALARM'}"),
        ("Policy", request.policy),
    )
    return (
        "<dl>"
        + "".join(f"<dt>{name}</dt><dd>{html.escape(value)}</dd>" for name, value in rows)
        + "</dl>"
    )


def _changes(request: ApprovalRequest) -> str:
    rows = "".join(
        f'<tr class="{"changed" if changed else "same"}"><td>{html.escape(setting)}</td>'
        f"<td>{html.escape(now)}</td><td>{html.escape(after)}</td></tr>"
        for setting, now, after, changed in changed_settings(
            request.plan.before, request.plan.after
        )
    )
    table = (
        "<table><thead><tr><th>Setting</th><th>Now</th><th>After</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    changes = "".join(f"<li>{html.escape(change)}</li>" for change in request.plan.changes)
    return table + (f"<ul>{changes}</ul>" if changes else "")


def _when(iso: str) -> str:
    try:
        return f"{datetime.fromisoformat(iso):%Y-%m-%d %H:%M:%S} UTC"
    except ValueError:
        return iso
