"""Side effects that must happen only after the database commit (async invokes, pushes).

A service calls `defer(session, fn)`; whoever commits the session (bitworks.api.Request,
bitworks.db.session_scope) runs `run_deferred(session)` right after the commit, so a dispatch
never starts before its message is visible and nothing is pushed for a rolled-back write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

_KEY = "bitworks.after_commit"


def defer(session: Session, action: Callable[[], Any]) -> None:
    session.info.setdefault(_KEY, []).append(action)


def discard(session: Session) -> None:
    session.info.pop(_KEY, None)


def run_deferred(session: Session) -> None:
    actions = session.info.pop(_KEY, [])
    for action in actions:
        try:
            action()
        except Exception:  # noqa: BLE001 - the write is committed; a failed effect is logged, sweepers recover
            from bitworks.api import logger

            logger.exception("deferred action failed")
