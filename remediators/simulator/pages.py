"""Reading the approval endpoint's HTML pages as an operator's browser would: the forms'
fields and the heading."""

from __future__ import annotations

from html.parser import HTMLParser

from remediators.simulator.lambda_runtime import HttpResponse

__all__ = ["forms", "title"]


class _FormParser(HTMLParser):
    """The hidden fields of each form on a page, by the form's `decision` field."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._fields: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self._fields = {}
        elif tag == "input" and self._fields is not None and values.get("name"):
            self._fields[str(values["name"])] = values.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._fields is not None:
            self.forms[self._fields.get("decision", "")] = self._fields
            self._fields = None


def forms(page: str) -> dict[str, dict[str, str]]:
    parser = _FormParser()
    parser.feed(page)
    return parser.forms


def title(response: HttpResponse) -> str:
    start, end = response.body.find("<h1>"), response.body.find("</h1>")
    return response.body[start + 4 : end] if 0 <= start < end else response.body[:80]
