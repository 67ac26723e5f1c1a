"""`make bench` / `make bench-check`: run every product benchmark, write bench/results/latest.md, print it.

    python -m bench.run [--check] [--quick] [--only cold,warm,deep,e2e]

--check exits 1 when a goal is missed. --quick: fewer iterations (a smoke run, not for figures).
Sections: 1 cold init (bench/cold_init.py), 2 warm overhead (bench/warm.py), 3 deep history
(bench/deep_history.py), 4-6 end-to-end chat, fan-out and memory through the emulator (bench/e2e.py).
Benchmarks are not tests: nothing here is a pytest assertion on timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bench.common import RESULTS, Row, bench_db_url, median, migrate, p95, reset_run_rows, use_database


def _fmt(v: float, unit: str) -> str:
    if v != v:  # nan
        return "—"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def render(rows: list[Row], notes: list[str], started: float, args: argparse.Namespace, extra: dict[str, Any]) -> str:
    lines = [
        "# Bitworks Message: product benchmarks",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end), loopback only; Python {sys.version.split()[0]}; run took "
        f"{time.monotonic() - started:.0f} s{' (--quick)' if args.quick else ''}. "
        "Subject and floor are measured interleaved in the same run; figures are medians and p95 (nearest rank) in ms; "
        "ratio = median(subject) / median(floor). `python -m bench.run` writes this file; "
        "emulator-only figures: [emulator.md](emulator.md).",
        "",
        "| section | measurement | median | p95 | floor median | floor p95 | ratio | goal | result | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        fm = _fmt(median(r.floor), r.unit) if r.floor else "—"
        fp = _fmt(p95(r.floor), r.unit) if r.floor else "—"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "—"
        if r.goal is None:
            goal, result = "—", "—"
        else:
            goal = f"≤ {r.goal:g} {r.unit}" if r.value_goal else f"≤ {r.goal:g}x"
            result = "PASS" if r.passed else "**FAIL**"
        note = (f"floor: {r.floor_label}; " if r.floor_label else "") + r.note
        lines.append(
            f"| {r.section} | {r.metric} | {_fmt(median(r.subject), r.unit)} | {_fmt(p95(r.subject), r.unit)} | "
            f"{fm} | {fp} | {ratio} | {goal} | {result} | {note} |"
        )
    goals = [r for r in rows if r.goal is not None]
    missed = [r for r in goals if not r.passed]
    lines += [
        "",
        f"**Goals: {len(goals) - len(missed)} of {len(goals)} met.**"
        + (" Missed: " + "; ".join(f"{r.metric}" for r in missed) + "." if missed else ""),
        "",
        "## Notes",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    if extra.get("emulator_md"):
        lines += ["", "## Emulator alone (bench/results/emulator.md, from bench/emulator_bench.py)", "", extra["emulator_md"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    p.add_argument("--only", default="cold,warm,deep,e2e")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    started = time.monotonic()
    q = args.quick
    db_url = bench_db_url()
    use_database(db_url)
    migrate(db_url)
    reset_run_rows()
    rows: list[Row] = []
    notes: list[str] = []

    def section(name: str, fn: Any) -> None:
        t0 = time.monotonic()
        print(f"bench: {name}…", file=sys.stderr, flush=True)
        r, n = fn()
        rows.extend(r)
        notes.extend(n)
        notes.append(f"Section {name} took {time.monotonic() - t0:.0f} s.")

    if "cold" in only:
        from bench import cold_init, deep_history
        from bench.common import http_event

        use_database(db_url)
        token, _ = deep_history.ensure_data()
        conv = str(deep_history.FLAT_ID)
        first = {
            "HealthFunction": http_event("GET", "/health", "/health"),
            "ListMessagesFunction": http_event(
                "GET",
                f"/conversations/{conv}/messages",
                "/conversations/{conversation_id}/messages",
                token=token,
                path_params={"conversation_id": conv},
            ),
            "LoginFunction": http_event(
                "POST",
                "/auth/login",
                "/auth/login",
                body={"email": "deep@bench.test", "password": "bench password 1", "client_id": str(deep_history.CLIENT_ID)},
            ),
        }
        section(
            "1 cold init",
            lambda: cold_init.run(db_url, rounds=1 if q else 5, budget_s=30 if q else 200, first_request=first, first_rounds=1 if q else 3),
        )
    if "warm" in only:
        from bench import warm

        section("2 warm", lambda: warm.run(db_url, n=50 if q else 300, budget_s=8 if q else 20))
    if "deep" in only:
        from bench import deep_history

        section("3 deep history", lambda: deep_history.run(db_url, n=30 if q else 150, budget_s=5 if q else 10))
    if "e2e" in only:
        from bench import e2e

        def _e2e() -> tuple[list[Row], list[str]]:
            r, n, _stats = e2e.run(
                db_url,
                turns_1=10 if q else 30,
                clients=5 if q else 20,
                turns_n=2 if q else 5,
                fanout=20 if q else 100,
                fan_reps=5 if q else 15,
                echo_n=100 if q else 300,
            )
            return r, n

        section("4-6 e2e, fan-out, memory", _e2e)
    emu = RESULTS / "emulator.md"
    extra = {"emulator_md": "\n".join(emu.read_text().splitlines()[2:]).strip() if emu.exists() else ""}
    text = render(rows, notes, started, args, extra)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(text)
    print(text)
    missed = [r for r in rows if r.goal is not None and not r.passed]
    if args.check and missed:
        print(f"bench-check: {len(missed)} goal(s) missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
