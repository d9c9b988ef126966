"""`make bench`: run every benchmark and write bench/results/latest.json (not committed)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    audit_usage,
    bulk_csv,
    console_pages,
    csv_contention,
    http_load,
    http_servers,
    lifecycle,
    oauth,
    offboarding,
    propagation,
    rotation,
    summary,
    validation,
)


def machine() -> dict[str, str | int | None]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="tokenwarden benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-propagation", action="store_true")
    parser.add_argument(
        "--only",
        choices=[
            "validation",
            "http",
            "http-servers",
            "console",
            "propagation",
            "csv",
            "contention",
            "oauth",
            "lifecycle",
            "rotation",
            "audit",
            "offboarding",
        ],
        help="run one group",
    )
    args = parser.parse_args()
    sizes = [10_000] if args.quick else [10_000, 100_000, 1_000_000]
    calls = 100_000 if args.quick else 500_000
    results: dict[str, object] = {"when": datetime.now(UTC).isoformat(), "machine": machine()}
    if args.only in (None, "validation"):
        print("validation (in-process, one core)...", file=sys.stderr)
        results["validation"] = validation.run(sizes, calls)
        print(json.dumps(results["validation"], indent=2), file=sys.stderr)
    if args.only in (None, "propagation") and not args.skip_propagation:
        print("propagation across 3 nodes (PostgreSQL)...", file=sys.stderr)
        results["propagation"] = propagation.run(quick=args.quick)
        print(json.dumps(results["propagation"], indent=2), file=sys.stderr)
    if args.only in (None, "csv"):
        print("CSV revocation of 10,000 users (CLI, SQLite)...", file=sys.stderr)
        results["csv"] = bulk_csv.run(1_000 if args.quick else 10_000, 1 if args.quick else 3)
        print(json.dumps(results["csv"], indent=2), file=sys.stderr)
    if args.only in (None, "contention"):
        users = 5_000 if args.quick else 50_000
        print(f"urgent revocations during a CSV job of {users:,} users (SQLite)...", file=sys.stderr)
        results["contention"] = {mode: csv_contention.run(users, mode) for mode in ("cli", "thread")}
        print(json.dumps(results["contention"], indent=2), file=sys.stderr)
    if args.only in (None, "http") and not args.skip_http:
        print("HTTP (2 workers, wrk on the same machine)...", file=sys.stderr)
        results["http"] = http_load.run(duration=3 if args.quick else 10, repeats=1 if args.quick else 3)
        print(json.dumps(results["http"], indent=2), file=sys.stderr)
    if args.only in (None, "http-servers") and not args.skip_http:
        print("HTTP doors against a raw ASGI hello, uvicorn and granian (issue 15)...", file=sys.stderr)
        results["http_servers"] = http_servers.run(quick=args.quick)
        print(json.dumps(results["http_servers"], indent=2), file=sys.stderr)
    if args.only in (None, "console"):
        print("console pages at 10,000 users and 100,000 tokens (issue 16)...", file=sys.stderr)
        results["console"] = console_pages.run(1_000 if args.quick else 10_000, 10, 5 if args.quick else 40)
        print(json.dumps(results["console"], indent=2), file=sys.stderr)
    if args.only in (None, "oauth"):
        print(
            "OAuth (issue 11): JWT vs PAT in process; introspection and token endpoint over HTTP...",
            file=sys.stderr,
        )
        results["oauth"] = oauth.run(quick=args.quick, http_too=not args.skip_http)
        print(json.dumps(results["oauth"], indent=2), file=sys.stderr)
    if args.only in (None, "lifecycle"):
        print("lifecycle (issue 12): expiry scan, enqueue, SMTP delivery...", file=sys.stderr)
        results["lifecycle"] = lifecycle.run(quick=args.quick)
        print(json.dumps(results["lifecycle"], indent=2), file=sys.stderr)
    if args.only in (None, "rotation"):
        print(
            "rotation (issue 13): 1,000 managed credentials into the built-in store and OpenBao...",
            file=sys.stderr,
        )
        results["rotation"] = rotation.run(quick=args.quick)
        print(json.dumps(results["rotation"], indent=2), file=sys.stderr)
    if args.only in (None, "audit"):
        print(
            "audit and usage (issue 14): recording cost, detection, chain append, verify...", file=sys.stderr
        )
        results["audit"] = audit_usage.run(quick=args.quick, http_too=not args.skip_http)
        print(json.dumps(results["audit"], indent=2), file=sys.stderr)
    if args.only in (None, "offboarding") and not args.skip_propagation:
        print("offboarding (issue 17): SCIM deactivation to refusal on 3 nodes...", file=sys.stderr)
        results["offboarding"] = offboarding.run(quick=args.quick)
        print(json.dumps(results["offboarding"], indent=2), file=sys.stderr)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print("\n" + summary.render(summary.summarize(results)), file=sys.stderr)


if __name__ == "__main__":
    main()
