"""Rendering of lifecycle notifications (issue 12): email text + HTML, and webhook bodies.

Each template ``T`` is three Jinja2 files in ``services/templates``: ``T.subject.j2`` (one line),
``T.txt.j2`` (plain text) and ``T.html.j2`` (HTML, autoescaped; inline styles and tables only,
so it renders in every mail client, with no scripts and no external images). Undefined names
are errors (``StrictUndefined``): a template can only show what the payload holds, and the
payload never holds a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from tokenwarden.domain.notices import EVENT_TYPES
from tokenwarden.ports.notify import EmailMessage

# the template names and their webhook event types live in domain/notices.py
TEMPLATES: Final = frozenset(EVENT_TYPES)
MAX_SUBJECT: Final = 200


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    inline_images: dict[str, bytes] = field(default_factory=dict)  # content id -> image bytes


# ------------------------------------------------------------------ filters
def _when(value: Any) -> str:
    """``2026-12-31T08:00:00Z`` -> ``2026-12-31 08:00 UTC``; None -> ``never``."""
    if value is None or value == "":
        return "never"
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not isinstance(value, datetime) and "T" not in str(value):
        return moment.strftime("%Y-%m-%d")  # a date alone stays a date
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(value: Any) -> str:
    """Only the date part of a timestamp (for bar-chart labels)."""
    return _when(value)[:10] if value else "?"


def _in_days(value: Any) -> str:
    """``0`` -> ``today``, ``1`` -> ``in 1 day``, ``7`` -> ``in 7 days``, negative -> ``... ago``."""
    try:
        days = int(value)
    except (TypeError, ValueError):
        return "soon"
    if days == 0:
        return "today"
    if days < 0:
        return f"{-days} day{'s' if days != -1 else ''} ago"
    return f"in {days} day{'s' if days != 1 else ''}"


def _plural(count: Any, singular: str, plural: str | None = None) -> str:
    return singular if count == 1 else (plural or singular + "s")


def _humanize(name: Any) -> str:
    """``expiringSoon`` / ``full_scope`` -> ``Expiring soon`` / ``Full scope``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(name)).replace("_", " ").replace("-", " ")
    text = " ".join(words.split()).lower()
    return text[:1].upper() + text[1:]


def _leader(label: Any, width: int = 38) -> str:
    """``Active tokens ........`` padded with dots to ``width`` (at least two)."""
    text = str(label)
    return f"{text} {'.' * max(2, width - len(text) - 1)}"


def _segment(value: Any) -> str:
    """One URL path segment, percent-encoded (an org name with a slash stays one segment)."""
    return quote(str(value), safe="")


def _base(value: Any) -> str:
    return str(value).rstrip("/") if value else ""


def _bar(count: Any, peak: Any, width: int = 40) -> int:
    """Length of a bar for ``count`` when ``peak`` fills ``width`` (a non-zero count shows)."""
    try:
        n, top = max(int(count), 0), max(int(peak), 0)
    except (TypeError, ValueError):
        return 0
    if n == 0 or top == 0:
        return 0
    return max(1, round(n * width / top))


def _peak(rows: Any, key: str = "count") -> int:
    values = [r.get(key, 0) for r in rows or [] if isinstance(r, Mapping)]
    numbers = [v for v in values if isinstance(v, int | float)]
    return int(max(numbers)) if numbers else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_SUBJECT]


@cache
def environment() -> Environment:
    """The Jinja2 environment: autoescape on for ``*.html.j2``, off for text and subjects."""
    env = Environment(
        loader=PackageLoader("tokenwarden.services", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",),
            disabled_extensions=("txt.j2", "subject.j2"),
            default=True,  # any other name: escaped
            default_for_string=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        when=_when,
        day=_day,
        in_days=_in_days,
        plural=_plural,
        humanize=_humanize,
        segment=_segment,
        base=_base,
        leader=_leader,
        rstrip=lambda text: text.rstrip("\n"),
    )
    env.globals.update(bar=_bar, peak=_peak)
    return env


def _check(template: str) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"unknown message template {template!r}; known: {', '.join(sorted(TEMPLATES))}")


def render_email(template: str, payload: Mapping[str, Any], *, message_id: str) -> RenderedEmail:
    """Subject, text and HTML of one message (``ValueError`` for an unknown template)."""
    _check(template)
    env = environment()
    context = {**payload, "message_id": message_id, "template": template}
    subject = _one_line(env.get_template(f"{template}.subject.j2").render(context))
    text = env.get_template(f"{template}.txt.j2").render(context)
    html = env.get_template(f"{template}.html.j2").render({**context, "subject": subject})
    return RenderedEmail(subject=subject, text=text, html=html)


def email_for(to: str, template: str, payload: Mapping[str, Any], message_id: str) -> EmailMessage:
    """The ``EmailMessage`` a channel sends for one outbox row. Headers name the event, the
    tokens (their ids, never secrets) and the warning thresholds, for mail filters and tests."""
    rendered = render_email(template, payload, message_id=message_id)
    headers = {"Auto-Submitted": "auto-generated", "X-Tokenwarden-Event": EVENT_TYPES[template]}
    tokens = [t for t in payload.get("tokens") or [] if isinstance(t, Mapping)]
    if tokens:
        headers["X-Tokenwarden-Tokens"] = ", ".join(str(t.get("id")) for t in tokens)[:900]
        if any(t.get("threshold") is not None for t in tokens):
            headers["X-Tokenwarden-Thresholds"] = ", ".join(str(t.get("threshold")) for t in tokens)[:900]
    return EmailMessage(
        to=to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id,
        headers=headers,
        inline_images=dict(rendered.inline_images),
    )


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def webhook_body(
    template: str, payload: Mapping[str, Any], *, message_id: str, created_at: datetime
) -> bytes:
    """Compact JSON ``{"type", "id", "timestamp", "data"}`` (Standard Webhooks' payload shape)."""
    _check(template)
    body = {
        "type": EVENT_TYPES[template],
        "id": message_id,
        "timestamp": _timestamp(created_at),
        "data": dict(payload),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
