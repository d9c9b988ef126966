"""The goals of issues 15 and 17, each figure beside its ceiling and its goal, ratios last.

``summarize(results)`` reads what ``python -m bench`` gathered (bench/results/latest.json) and
returns one row per goal; a figure that was not measured in this run says so instead of
passing. Printed at the end of every ``make bench``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


Row = tuple[str, str, str, str, str]  # figure, value, ceiling, goal, verdict


def _row(
    name: str, value: float | None, ceiling: str, goal: str, ok: Callable[[float], bool], unit: str
) -> Row:
    if value is None:
        return (name, "not measured", ceiling, goal, "—")
    return (name, f"{value:g} {unit}".strip(), ceiling, goal, "met" if ok(value) else "NOT met")


def summarize(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for bus in ("postgres", "redis"):
        p99 = _get(results, "propagation", f"latency_{bus}_bus", "p99_ms")
        rows.append(
            _row(
                f"revoke -> refused everywhere, {bus} bus, p99", p99, "—", "<= 10 ms", lambda v: v <= 10, "ms"
            )
        )
    csv_s = _get(results, "csv", "median_s")
    rows.append(
        _row("CSV of 10,000 users (SQLite, with process start)", csv_s, "—", "< 1 s", lambda v: v < 1, "s")
    )
    bg = _get(results, "propagation", "break_glass", "break_glass_call_ms")
    rows.append(_row("break-glass call over 1,000,000 tokens", bg, "—", "< 100 ms", lambda v: v < 100, "ms"))
    val = results.get("validation") or {}
    sizes = sorted(int(k.split("_")[1]) for k in val if k.startswith("validate_") and k.count("_") == 1)
    if sizes:
        top = sizes[-1]
        ceiling = _get(val, f"ceiling_{top}", "median_per_s")
        rows.append(
            _row(
                f"validation at {top:,} tokens / bare loop",
                _get(val, f"ratio_{top}"),
                f"{ceiling:,}/s" if ceiling else "—",
                ">= 0.75",
                lambda v: v >= 0.75,
                "",
            )
        )
        low, high = (
            _get(val, f"validate_{sizes[0]}", "median_per_s"),
            _get(val, f"validate_{top}", "median_per_s"),
        )
        flat = round(low / high, 2) if low and high else None
        rows.append(
            _row(f"validation {sizes[0]:,} vs {top:,} tokens", flat, "—", "<= 1.3x", lambda v: v <= 1.3, "x")
        )
    mem = _get(val, "memory", "bytes_per_token")
    rows.append(_row("memory per cached token", mem, "—", "<= 300 B", lambda v: v <= 300, "B"))
    for server in ("uvicorn", "granian"):
        for door, ceiling_name in (("validate", "hello_get"), ("introspect", "hello_post")):
            hello = _get(results, "http_servers", server, ceiling_name, "median_per_s")
            rows.append(
                _row(
                    f"{server}: {door} / raw ASGI hello",
                    _get(results, "http_servers", server, door, "of_ceiling"),
                    f"{hello:,}/s" if hello else "—",
                    ">= 0.55",
                    lambda v: v >= 0.55,
                    "",
                )
            )
            rows.append(
                _row(
                    f"{server}: {door} p99 at 70% of its peak",
                    _get(results, "http_servers", server, door, "at_70_percent", "p99_ms"),
                    "—",
                    "<= 5 ms",
                    lambda v: v <= 5,
                    "ms",
                )
            )
    pages = _get(results, "console", "pages") or {}
    worst = max((v["p95_ms"] for k, v in pages.items() if "ceiling" not in k), default=None)
    rows.append(
        _row(
            "console pages at 10k users / 100k tokens, worst p95",
            worst,
            "—",
            "< 100 ms",
            lambda v: v < 100,
            "ms",
        )
    )
    refused = "refused_on_every_other_node"
    single = _get(results, "offboarding", "ceiling_single_pat_revoke", refused, "p99_ms")
    rows.append(
        _row(
            "SCIM deactivation -> refused on every other node, p99",
            _get(results, "offboarding", "deactivation_1_pats", refused, "p99_ms"),
            f"{single} ms (one PAT revoked)" if single is not None else "—",
            "<= 50 ms",
            lambda v: v <= 50,
            "ms",
        )
    )
    ratios = [r for r in rows if r[3].startswith((">=", "<= 1.3"))]
    return [r for r in rows if r not in ratios] + ratios


def render(rows: list[Row]) -> str:
    header: Row = ("figure", "value", "ceiling", "goal", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(lines)
