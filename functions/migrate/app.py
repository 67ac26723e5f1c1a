"""Deploy-time migrations: the CloudFormation custom resource `DatabaseMigration`.

Create/Update: `bitworks.migrate.upgrade(engine)` (never downgrades; a database ahead of this code, as on a
rollback, is success), then the first superadmin when SUPERADMIN_SECRET_ARN names a secret with
`{"email", "password"}` and no superadmin has that email yet. Delete: SUCCESS without touching the database.
The answer goes to the pre-signed ResponseURL with urllib (no boto3, no extra dependency). The password is
never logged nor returned; a failure reports the error's class and a truncated message.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Any

logger = logging.getLogger()
logger.setLevel(logging.INFO)

PHYSICAL_ID = "bitworks-database-migration"
MAX_REASON = 1000


def send_response(event: dict[str, Any], context: Any, status: str, reason: str = "", data: dict[str, str] | None = None) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": (reason or f"see CloudWatch log stream {getattr(context, 'log_stream_name', '?')}")[:MAX_REASON],
            "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_ID,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": data or {},
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - CloudFormation's pre-signed https URL
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - CloudFormation's pre-signed URL
        logger.info("response sent: %s %s", status, response.status)


def ensure_superadmin(engine: Any, secret_arn: str) -> str:
    """Create the superadmin named by the secret once; never changes an existing user."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from bitworks.auth import hash_password
    from bitworks.models import User
    from bitworks.secrets import get_secret_json

    secret = get_secret_json(secret_arn)
    email = str(secret["email"]).strip().lower()
    with Session(engine) as session, session.begin():
        found = session.scalar(select(User.id).where(User.client_id.is_(None), User.email == email))
        if found is not None:
            return "exists"
        session.add(User(client_id=None, email=email, password_hash=hash_password(str(secret["password"])), role="superadmin"))
    return "created"


def run(event: dict[str, Any]) -> dict[str, str]:
    from bitworks.db import build_engine
    from bitworks.migrate import upgrade

    engine = build_engine()
    try:
        data = {"Migration": upgrade(engine)}
        secret_arn = os.environ.get("SUPERADMIN_SECRET_ARN", "")
        if secret_arn:
            data["Superadmin"] = ensure_superadmin(engine, secret_arn)
        return data
    finally:
        engine.dispose()


def handler(event: dict[str, Any], context: Any) -> None:
    request_type = event.get("RequestType")
    logger.info("custom resource %s %s", request_type, event.get("LogicalResourceId"))
    if request_type == "Delete":
        send_response(event, context, "SUCCESS", "nothing to do on delete")
        return
    try:
        data = run(event)
    except Exception as exc:  # noqa: BLE001 - every failure must reach CloudFormation, or it waits
        message = f"{type(exc).__name__}: {exc}"
        logger.error("migration failed: %s", message[:MAX_REASON])
        send_response(event, context, "FAILED", f"migration failed: {message}")
        return
    logger.info("migration done: %s", data)
    send_response(event, context, "SUCCESS", json.dumps(data), data)
