"""The per-test TRUNCATE survives a straggler still holding locks (seen in CI as a deadlock)."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import text

from tests.support.cleanup import truncate


def _wait_for_lock_waiter(db: Any, deadline_s: float = 20) -> None:
    give_up = time.monotonic() + deadline_s
    with db.connect() as conn:
        while time.monotonic() < give_up:
            if conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar():
                return
            conn.rollback()
    raise AssertionError("nobody ever waited for a lock")


def test_truncate_retries_when_chosen_as_deadlock_victim(db: Any, factory: Any) -> None:
    factory.client()
    holder_ready = threading.Event()
    truncate_waiting = threading.Event()
    holder_errors: list[BaseException] = []

    def straggler() -> None:
        # Like a late handler: reads one table, then another, in the opposite order to TRUNCATE's locks.
        try:
            with db.connect() as conn:
                conn.execute(text("SET deadlock_timeout = '10s'"))  # so TRUNCATE is the one detecting it
                conn.execute(text("SELECT count(*) FROM clients"))
                holder_ready.set()
                truncate_waiting.wait(20)
                conn.execute(text("SELECT count(*) FROM api_keys"))
                conn.rollback()
        except BaseException as exc:  # pragma: no cover - reported below
            holder_errors.append(exc)
            holder_ready.set()

    worker = threading.Thread(target=straggler)
    worker.start()
    assert holder_ready.wait(20)
    watcher = threading.Thread(target=lambda: (_wait_for_lock_waiter(db), truncate_waiting.set()))
    watcher.start()
    truncate(db, deadline_s=30)  # the first attempt is the deadlock victim; the retry succeeds
    worker.join(30)
    watcher.join(30)
    assert holder_errors == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM clients")).scalar() == 0
