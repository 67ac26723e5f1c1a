"""Schedule / ScheduleV2 events: rate() and cron() expressions firing EventBridge-shaped events."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .lambda_service import LambdaService
from .template import ACCOUNT_ID, ScheduleSpec

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DAYS = {d: i + 1 for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}  # AWS: 1 = Sunday


def parse_rate(expr: str) -> float | None:
    m = re.fullmatch(r"\s*rate\(\s*(\d+)\s+(second|minute|hour|day)s?\s*\)\s*", expr, re.I)
    return int(m.group(1)) * _UNITS[m.group(2).lower()] if m else None


def _field(text: str, lo: int, hi: int, names: dict[str, int] | None = None) -> set[int] | None:
    """One cron field -> allowed values; None means '?' / '*' (anything)."""
    if text in ("*", "?"):
        return None
    out: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/", 1)
            step = int(s)
        if part in ("*", ""):
            a, b = lo, hi
        elif "-" in part:
            x, y = part.split("-", 1)
            a, b = _val(x, names), _val(y, names)
        else:
            a = _val(part, names)
            b = hi if step > 1 else a
        out.update(range(a, b + 1, step))
    return out


def _val(text: str, names: dict[str, int] | None) -> int:
    t = text.upper()
    return names[t] if names and t in names else int(t)


class Cron:
    """AWS cron: minutes hours day-of-month month day-of-week year (UTC). L/W/# are not supported."""

    def __init__(self, expr: str) -> None:
        m = re.fullmatch(r"\s*cron\((.*)\)\s*", expr, re.I)
        if not m:
            raise ValueError(expr)
        f = m.group(1).split()
        if len(f) != 6 or any(c in "".join(f) for c in "LW#"):
            raise ValueError(f"unsupported cron expression {expr}")
        self.minutes = _field(f[0], 0, 59)
        self.hours = _field(f[1], 0, 23)
        self.dom = _field(f[2], 1, 31)
        self.months = _field(f[3], 1, 12, _MONTHS)
        self.dow = _field(f[4], 1, 7, _DAYS)
        self.years = _field(f[5], 1970, 2199)

    @staticmethod
    def _ok(allowed: set[int] | None, v: int) -> bool:
        return allowed is None or v in allowed

    def next_after(self, t: datetime) -> datetime | None:
        t = (t + timedelta(minutes=1)).replace(second=0, microsecond=0)
        for _ in range(366 * 5):  # days
            aws_dow = (t.isoweekday() % 7) + 1
            if (
                self._ok(self.years, t.year)
                and self._ok(self.months, t.month)
                and self._ok(self.dom, t.day)
                and self._ok(self.dow, aws_dow)
            ):
                while True:
                    if self._ok(self.hours, t.hour) and self._ok(self.minutes, t.minute):
                        return t
                    nt = t + timedelta(minutes=1)
                    if nt.day != t.day:
                        break
                    t = nt
            t = (t + timedelta(days=1)).replace(hour=0, minute=0)
        return None


def scheduled_event(spec: ScheduleSpec, region: str, when: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{spec.name}"],
        "detail": {},
    }


class Scheduler:
    def __init__(self, lambdas: LambdaService, schedules: list[ScheduleSpec], speedup: float = 1.0) -> None:
        self.lambdas = lambdas
        self.schedules = [s for s in schedules if s.enabled]
        self.speedup = max(speedup, 1e-6)
        self.fired: dict[str, int] = {s.name: 0 for s in self.schedules}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for s in self.schedules:
            self._tasks.append(asyncio.ensure_future(self._run(s)))

    async def _run(self, spec: ScheduleSpec) -> None:
        rate = parse_rate(spec.expression)
        cron = None
        if rate is None:
            try:
                cron = Cron(spec.expression)
            except ValueError:
                self.lambdas.logger.write(f"devserver: schedule {spec.name}: cannot emulate {spec.expression!r}")
                return
        pool = self.lambdas.lookup(spec.function)
        if pool is None:
            return
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if rate is not None:
                next_at += rate / self.speedup
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                when = datetime.now(UTC)
            else:
                assert cron is not None
                now = datetime.now(UTC)
                nxt = cron.next_after(now)
                if nxt is None:
                    return
                await asyncio.sleep(max(0.0, (nxt - now).total_seconds() / self.speedup))
                when = nxt
            event = spec.input if spec.input is not None else scheduled_event(spec, self.lambdas.model.region, when)
            self.fired[spec.name] += 1
            self.lambdas.invoke_async(pool, json.dumps(event).encode())

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
