"""Bulk import of users and templates as an asynchronous, all-or-nothing job.

POST /admin/import stores the rows in an `import_jobs` row (status `queued`), commits, and hands
the job to the worker Lambda by an asynchronous invoke. The worker validates every row (schema,
duplicates within the file, duplicates against the database), and either writes all rows in one
transaction (`succeeded`, with counts) or writes none (`failed`, with per-row errors
`{row, kind, field, message}`). Password hashing (costly at OWASP settings) happens in the worker.
The stored rows hold plaintext passwords, so the payload is emptied once the job has ended.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks.access import Principal, acting_client_id, require_admin
from bitworks.auth import hash_password
from bitworks.config import get_settings
from bitworks.db import session_scope
from bitworks.errors import NotFound, UpstreamError, ValidationFailed, validation_details
from bitworks.models import ImportJob, Template, User

if TYPE_CHECKING:  # schemas load pydantic: only routes that parse a body need it
    from bitworks.bodies import Body, Spec

MAX_ROWS = 1000


def job_view(row: ImportJob) -> dict[str, Any]:
    return {
        "id": row.id,
        "status": row.status,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "counts": dict(row.result or {"users": 0, "templates": 0}),
        "errors": list(row.errors or []),
    }


# -- HTTP side -------------------------------------------------------------------------------------
def start(session: Session, principal: Principal, body: Body) -> dict[str, Any]:
    require_admin(principal)
    client_id = acting_client_id(session, principal, body.client_id)
    total = len(body.users) + len(body.templates)
    if total == 0:
        raise ValidationFailed("body: nothing to import", [{"field": "users", "message": "users and templates are both empty"}])
    if total > MAX_ROWS:
        message = f"at most {MAX_ROWS} rows per import (users and templates together), got {total}"
        raise ValidationFailed(f"body: {message}", [{"field": "users", "message": message}])
    job = ImportJob(
        client_id=client_id,
        created_by=principal.user_id,
        status="queued",
        payload={"users": body.users, "templates": body.templates},
    )
    session.add(job)
    session.flush()
    session.refresh(job)
    # Commit before the hand-off: the worker must find the job; a failed hand-off is then recorded.
    session.commit()
    try:
        _invoke_worker(job.id)
    except Exception:  # noqa: BLE001 - any failure to hand off means the job will never run
        from bitworks.api import logger

        logger.warning("import hand-off failed", extra={"job_id": str(job.id)}, exc_info=True)
        _finish(
            session,
            job.id,
            "failed",
            errors=[{"row": None, "kind": None, "field": None, "message": "the import could not be started"}],
        )
        session.commit()
        raise UpstreamError("the import could not be started; try again") from None
    return {"job": job_view(job)}


def _invoke_worker(job_id: uuid.UUID) -> None:
    from bitworks.awscall import invoke_event

    invoke_event(str(get_settings().import_function_name), json.dumps({"job_id": str(job_id)}).encode())


def get(session: Session, principal: Principal, job_id: uuid.UUID) -> dict[str, Any]:
    require_admin(principal)
    job = session.get(ImportJob, job_id)
    if job is None or (not principal.is_superadmin and job.client_id != principal.client_id):
        raise NotFound("import job not found")
    return {"job": job_view(job)}


# Longer than the worker's 15-minute Lambda timeout: a job still `running` then died with its worker.
STALE_AFTER = timedelta(minutes=20)


def expire_stale(session: Session) -> int:
    """The sweeper fails jobs whose worker was killed mid-run (timeout): none stays `running` for ever."""
    error = {"row": None, "kind": "job", "field": None, "message": "the import worker stopped before finishing; start it again"}
    result = session.execute(
        update(ImportJob)
        .where(ImportJob.status.in_(("running", "queued")), ImportJob.updated_at < datetime.now(UTC) - STALE_AFTER)
        .values(status="failed", errors=[error], payload={}, updated_at=datetime.now(UTC))
    )
    return int(getattr(result, "rowcount", 0) or 0)


# -- worker side -----------------------------------------------------------------------------------
def _finish(
    session: Session,
    job_id: uuid.UUID,
    status: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(status=status, errors=errors or [], result=counts, payload={}, updated_at=datetime.now(UTC))
    )


def _claim(job_id: uuid.UUID) -> tuple[uuid.UUID, dict[str, Any]] | None:
    """queued -> running, atomically: a second delivery of the same invoke finds nothing to do."""
    with session_scope() as session:
        row = session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.status == "queued")
            .values(status="running", updated_at=datetime.now(UTC))
            .returning(ImportJob.client_id, ImportJob.payload)
        ).first()
    return None if row is None else (row.client_id, dict(row.payload or {}))


def _error(row: int, kind: str, field: str, message: str) -> dict[str, Any]:
    return {"row": row, "kind": kind, "field": field, "message": message}


def _parse(spec: Spec, kind: str, rows: list[Any], errors: list[dict[str, Any]]) -> list[Body | None]:
    """One entry per row (None where invalid), so indexes stay those of the file."""
    from pydantic_core import ValidationError

    parsed: list[Body | None] = []
    for index, raw in enumerate(rows):
        try:
            parsed.append(spec.validate_python(raw))
        except ValidationError as exc:
            errors.extend(_error(index, kind, d["field"], d["message"]) for d in validation_details(exc))
            parsed.append(None)
    return parsed


def validate(
    session: Session, client_id: uuid.UUID, payload: dict[str, Any]
) -> tuple[list[Body | None], list[Body | None], list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    from bitworks.bodies import ImportTemplateRow, ImportUserRow

    users = _parse(ImportUserRow, "users", list(payload.get("users") or []), errors)
    templates = _parse(ImportTemplateRow, "templates", list(payload.get("templates") or []), errors)

    existing_emails = set(session.scalars(select(User.email).where(User.client_id == client_id)))
    seen: dict[str, int] = {}
    for index, user in enumerate(users):
        if user is None:
            continue
        if user.email in seen:
            errors.append(_error(index, "users", "email", f"duplicate of row {seen[user.email]}"))
        elif user.email in existing_emails:
            errors.append(_error(index, "users", "email", "already used in this client"))
        seen.setdefault(user.email, index)

    existing_names = set(session.scalars(select(Template.name).where(Template.client_id == client_id)))
    seen = {}
    for index, template in enumerate(templates):
        if template is None:
            continue
        if template.name in seen:
            errors.append(_error(index, "templates", "name", f"duplicate of row {seen[template.name]}"))
        elif template.name in existing_names:
            errors.append(_error(index, "templates", "name", "a template of this client already has this name"))
        seen.setdefault(template.name, index)
    errors.sort(key=lambda e: (e["kind"] != "users", e["row"]))
    return users, templates, errors


def run(job_id: uuid.UUID) -> str:
    """Run one job to its end; returns the final status (or `skipped` when it was not queued)."""
    claimed = _claim(job_id)
    if claimed is None:
        return "skipped"
    client_id, payload = claimed
    try:
        with session_scope() as session:
            parsed_users, parsed_templates, errors = validate(session, client_id, payload)
        if errors:
            with session_scope() as session:
                _finish(session, job_id, "failed", errors=errors)
            return "failed"
        users = [u for u in parsed_users if u is not None]  # no errors: every row parsed
        templates = [t for t in parsed_templates if t is not None]
        # Hash outside any transaction: at production cost this takes a while.
        hashes = [hash_password(u.password) for u in users]
        counts = {"users": len(users), "templates": len(templates)}
        try:
            with session_scope() as session:
                session.add_all(
                    User(client_id=client_id, email=u.email, password_hash=h, role=u.role, display_name=u.display_name)
                    for u, h in zip(users, hashes, strict=True)
                )
                session.add_all(Template(client_id=client_id, name=t.name, content=t.content, description=t.description) for t in templates)
                session.flush()
                _finish(session, job_id, "succeeded", counts=counts)
        except IntegrityError:
            # Someone created the same email or name between validation and the write.
            with session_scope() as session:
                message = "a user email or template name was created meanwhile; nothing was imported, run the import again"
                _finish(session, job_id, "failed", errors=[{"row": None, "kind": None, "field": None, "message": message}])
            return "failed"
        return "succeeded"
    except Exception:  # noqa: BLE001 - a crashed job must end `failed`, never stay `running`
        from bitworks.api import logger

        logger.exception("import job crashed", extra={"job_id": str(job_id)})
        with session_scope() as session:
            _finish(session, job_id, "failed", errors=[{"row": None, "kind": None, "field": None, "message": "internal error"}])
        return "failed"


def handle_event(event: Any) -> dict[str, Any]:
    """The worker Lambda's entry: {"job_id": "..."}. A malformed event is logged and dropped."""
    try:
        job_id = uuid.UUID(str((event or {}).get("job_id")))
    except (ValueError, TypeError, AttributeError):
        from bitworks.api import logger

        logger.warning("import worker: event without a valid job_id")
        return {"status": "ignored"}
    return {"job_id": str(job_id), "status": run(job_id)}
