"""The AI turn engine: user messages (create, retry), dispatch to n8n, replies, failures, sweeping.

Turns are row state, not locks (ARCHITECTURE.md, "n8n contract"). `conversations.active_message_id`,
`turn_id` and `turn_expires_at` name the one user message n8n works on. Every transition happens
under the conversation's row lock (SELECT ... FOR UPDATE, or the seq allocator's UPDATE), and
whoever ends a turn (dispatch, callback, TurnFailure, sweeper) starts the next pending user
message in seq order in the same transaction. A transition names the turn it ends: a stale actor
(a Lambda retry, a duplicate invoke, a late callback) finds another turn_id and does nothing.

Within a turn the dispatch records its claim in the user message's metadata under "dispatch":
{"state": "sending", "lease_until"} while it POSTs, {"state": "awaiting_reply"} while n8n works
in callback style. That makes a duplicate dispatch a no-op without a lock, while a Lambda retry
after a crash (lease run out) sends again with the same delivery_id. The key goes when the turn ends.

Effects run after the commit (bitworks.outbox): pushes to the conversation's connections, then the
async invoke of the next turn's dispatch. A reply's metadata gets "pushed": true once its push
went out, so a retried dispatch after a crash between commit and push pushes it exactly then.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import TextClause, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bitworks import outbox, ratelimit, views
from bitworks.access import (
    Principal,
    TokenClaims,
    check_owned,
    check_token_user,
    owned_conversation,
    principal_for,
    visible_conversation,
)
from bitworks.config import Settings, get_settings
from bitworks.errors import Conflict, Forbidden, NotFound, Unauthorized
from bitworks.jsonutil import dumps, iso
from bitworks.models import UNPUSHED_REPLY, Client, Connection, Context, Conversation, Message, Template, WsTicket

if TYPE_CHECKING:
    from bitworks.bodies import Body  # a validated request body (bitworks.bodies; shapes in bitworks.schemas)

RATE_WINDOW_SECONDS = 60
TOO_MANY_MESSAGES = "too many messages, slow down"
TURN_MARGIN_SECONDS = 30  # async-invoke queueing and clock slack on top of the delivery budget
LEASE_MARGIN_SECONDS = 5
DISPATCH_SAFETY_SECONDS = 3  # keep this much of the Lambda's time to store the outcome
CONNECTION_MAX_AGE = timedelta(hours=2)  # API Gateway's hard limit per connection
CONNECTION_MAX_IDLE = timedelta(minutes=10)  # API Gateway's idle timeout
REPUSH_AFTER = timedelta(seconds=30)  # the normal path has had its chance (its push retries included)
REPUSH_WITHIN = timedelta(minutes=10)  # older: every socket that missed it has been idle-closed since
SWEEP_BATCH = 500
DISPATCH_KEY = "dispatch"
PUSHED_KEY = "pushed"
FAILED_CALLBACK = ("upstream_error", "the assistant could not be reached")


def _logger() -> Any:
    from bitworks.api import logger

    return logger


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)


def _turn_deadline(settings: Settings) -> timedelta:
    from bitworks.n8n import budget_seconds

    return timedelta(seconds=budget_seconds(settings) + TURN_MARGIN_SECONDS)


# -- row helpers ------------------------------------------------------------------------------------
def _lock(session: Session, conversation_id: uuid.UUID) -> Conversation | None:
    stmt = select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


def _fresh_message(session: Session, message_id: uuid.UUID) -> Message | None:
    stmt = select(Message).where(Message.id == message_id).execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def _next_seq(session: Session, conversation_id: uuid.UUID) -> int:
    # The row lock this UPDATE takes serialises writers: seq is strict and gap-free per conversation.
    sql = text("UPDATE conversations SET last_seq = last_seq + 1, updated_at = now() WHERE id = :id RETURNING last_seq")
    return int(session.execute(sql, {"id": conversation_id}).scalar_one())


def _reply_of(session: Session, message_id: uuid.UUID) -> Message | None:
    stmt = select(Message).where(Message.in_reply_to == message_id).execution_options(populate_existing=True)
    return session.scalars(stmt).first()


def _without(metadata: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    return {k: v for k, v in (metadata or {}).items() if k not in keys}


def _is_turn(conversation: Conversation | None, message_id: uuid.UUID, turn_id: uuid.UUID) -> bool:
    return conversation is not None and conversation.active_message_id == message_id and conversation.turn_id == turn_id


def _new_turn() -> tuple[uuid.UUID, datetime]:
    """A fresh turn id and the deadline by which the sweeper may end the turn."""
    return uuid.uuid4(), _now() + _turn_deadline(get_settings())


def _start_turn(session: Session, conversation: Conversation, message_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    conversation.active_message_id = message_id
    conversation.turn_id, conversation.turn_expires_at = _new_turn()
    return message_id, conversation.turn_id


def _end_turn(session: Session, conversation: Conversation) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Clear the turn and start the next pending user message (lowest seq), if any."""
    conversation.active_message_id = None
    conversation.turn_id = None
    conversation.turn_expires_at = None
    session.flush()
    stmt = (
        select(Message.id)
        .where(Message.conversation_id == conversation.id, Message.status == "pending", Message.role == "user")
        .order_by(Message.seq)
        .limit(1)
    )
    next_id = session.scalars(stmt).first()
    return None if next_id is None else _start_turn(session, conversation, next_id)


# -- effects after the commit -----------------------------------------------------------------------
def invoke_dispatch(message_id: uuid.UUID, turn_id: uuid.UUID, function_name: str | None = None) -> None:
    name = function_name or get_settings().dispatch_function_name
    if not name:
        _logger().warning("no dispatch function configured; the sweeper will expire the turn", extra={"message_id": str(message_id)})
        return
    from bitworks.awscall import invoke_event

    invoke_event(name, json.dumps({"message_id": str(message_id), "turn_id": str(turn_id)}).encode())


def _push_events(conversation_id: uuid.UUID, events: list[dict[str, Any]], mark_pushed: uuid.UUID | None = None) -> None:
    """Push `events` in order to the conversation's connections, then mark the reply pushed."""
    if not events and mark_pushed is None:
        return
    from bitworks.db import session_scope
    from bitworks.realtime import push_to_conversation

    with session_scope() as push_session:
        conversation = push_session.get(Conversation, conversation_id)
        failed = False
        if conversation is not None:
            for event in events:
                failed = bool(push_to_conversation(push_session, conversation, event).failed) or failed
        # A socket that failed (after retries) leaves the reply unmarked: the sweeper pushes it again.
        if mark_pushed is not None and not failed:
            push_session.execute(
                update(Message)
                .where(Message.id == mark_pushed)
                .values(metadata_=Message.metadata_.op("||")(func.jsonb_build_object(PUSHED_KEY, True)))
            )


def _after_commit(
    session: Session,
    conversation_id: uuid.UUID,
    events: list[dict[str, Any]],
    *,
    mark_pushed: uuid.UUID | None = None,
    invoke: tuple[uuid.UUID, uuid.UUID] | None = None,
    dispatch_function: str | None = None,
) -> None:
    """Push `events` in order, then mark the reply pushed, then start the next turn's dispatch."""

    def run() -> None:
        try:
            _push_events(conversation_id, events, mark_pushed)
        finally:
            # The next turn must start even when a push failed.
            if invoke is not None:
                invoke_dispatch(invoke[0], invoke[1], dispatch_function)

    outbox.defer(session, run)


def _typing(conversation_id: uuid.UUID, state: str) -> dict[str, Any]:
    return {"type": "typing", "conversation_id": conversation_id, "state": state}


# -- user messages ----------------------------------------------------------------------------------
def _by_client_message_id(session: Session, conversation_id: uuid.UUID, client_message_id: str) -> Message | None:
    stmt = select(Message).where(Message.conversation_id == conversation_id, Message.client_message_id == client_message_id)
    return session.scalars(stmt.execution_options(populate_existing=True)).first()


def _repeat(existing: Message, content: str) -> tuple[dict[str, Any], bool]:
    if existing.content != content:
        raise Conflict("client_message_id was already used with other content")
    return views.message(existing), False


def _client_settings(session: Session, client_id: uuid.UUID) -> dict[str, Any]:
    client = session.get(Client, client_id)
    return dict(client.settings or {}) if client else {}


def _message_rate(client_settings: dict[str, Any]) -> int:
    limit = client_settings.get("message_rate_per_minute")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return get_settings().default_message_rate
    return limit


def _rate_key(user_id: uuid.UUID) -> str:
    return f"msg:user:{user_id}"


def _rate_limit(session: Session, client_settings: dict[str, Any], user_id: uuid.UUID) -> None:
    ratelimit.hit(session, _rate_key(user_id), _message_rate(client_settings), RATE_WINDOW_SECONDS, TOO_MANY_MESSAGES)


@cache
def _lock_for_send(with_token_user: bool) -> TextClause:
    """The conversation, row-locked, with its client's settings and its push audience, and (for
    a bearer token not checked yet) the token's user: one round trip, through Core (an ORM load
    costs 0.7 ms more). Built on first use: the audience rule lives in bitworks.realtime, which a
    function loads only when it sends."""
    from bitworks.realtime import audience_sql

    user = ", u.token_version AS u_token_version, u.role AS u_role, u.client_id AS u_client_id" if with_token_user else ""
    join = " LEFT JOIN users AS u ON u.id = :user_id" if with_token_user else ""
    return text(
        f"""
        SELECT c.id, c.client_id, c.user_id, c.status, c.mode, c.last_seq, c.active_message_id, k.settings,
            {audience_sql("c.user_id", "c.id")} AS audience{user}
        FROM conversations AS c JOIN clients AS k ON k.id = c.client_id{join}
        WHERE c.id = :id
        FOR UPDATE OF c
        """
    )


def _lock_as(session: Session, who: Principal | TokenClaims, conversation_id: uuid.UUID) -> tuple[Principal, Any]:
    """The sender, checked, and the locked conversation row (None when there is none)."""
    if isinstance(who, Principal):
        return who, session.execute(_lock_for_send(False), {"id": conversation_id}).first()
    row = session.execute(_lock_for_send(True), {"id": conversation_id, "user_id": who.user_id}).first()
    if row is None:  # no conversation: a bad token still answers 401, not 404
        return check_token_user(session, who), None
    return principal_for(who, row.u_token_version, row.u_role, row.u_client_id), row


# Count the message against the sender's rate, then (if within it) allocate its seq, start its
# turn and insert it: one statement. Modifying CTEs all run; the rate decides through WHERE.
_SEND = text(
    f"""
    WITH hit AS ({ratelimit.UPSERT_SQL}),
    conv AS (
        UPDATE conversations SET last_seq = :seq, updated_at = now(),
            active_message_id = COALESCE(:turn_message, active_message_id),
            turn_id = COALESCE(:turn_id, turn_id),
            turn_expires_at = COALESCE(:turn_expires_at, turn_expires_at)
        WHERE id = :conversation_id AND (SELECT count FROM hit) <= :limit
    )
    INSERT INTO messages (id, conversation_id, seq, role, content, status, client_message_id)
    SELECT :id, :conversation_id, :seq, 'user', :content, :status, :client_message_id
    WHERE (SELECT count FROM hit) <= :limit
    RETURNING timestamp
    """
)


def send_user_message(
    session: Session, who: Principal | TokenClaims, conversation_id: uuid.UUID, content: str, client_message_id: str | None
) -> tuple[dict[str, Any], bool]:
    """Store a user message (strictly ordered), start its turn when none runs; (message view, created?).

    A repeat of a client_message_id with the same content returns the first message (created False:
    nothing pushed, no turn, not counted against the rate); with other content 409.

    The hot path of the product, so it is counted in statements (tests/integration/test_round_trips):
    the row lock comes first (with the client's settings, the push audience and, for a bearer
    token, the check of its user: `who` is then a TokenClaims), which serialises
    writers of the conversation, so the repeat check, seq = last_seq + 1 and the turn start need
    neither a savepoint nor a retry; then one statement counts the rate, updates the conversation
    and inserts the message. The pushes and the dispatch invoke go after the commit."""
    principal, locked = _lock_as(session, who, conversation_id)
    conversation = check_owned(principal, locked)
    client_settings, audience = dict(conversation.settings or {}), list(conversation.audience or ())
    if conversation.status == "closed":
        raise Conflict("the conversation is closed")
    if client_message_id is not None:
        # Its own statement, after the lock: a fresh snapshot sees a repeat committed while we waited.
        existing = _by_client_message_id(session, conversation.id, client_message_id)
        if existing is not None:
            return _repeat(existing, content)
    assert principal.user_id is not None  # check_owned: the owner is a user

    bot = conversation.mode != "human"
    message = Message(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        seq=conversation.last_seq + 1,
        role="user",
        content=content,
        status="pending" if bot else "sent",
        client_message_id=client_message_id,
        in_reply_to=None,
        metadata_={},
        error=None,
    )
    turn_id, turn_expires_at = _new_turn() if bot and conversation.active_message_id is None else (None, None)
    window_start, window_end = ratelimit.window(RATE_WINDOW_SECONDS)
    params = {
        "key": _rate_key(principal.user_id),
        "start": window_start,
        "end": window_end,
        "amount": 1,
        "limit": _message_rate(client_settings),
        "conversation_id": conversation.id,
        "seq": message.seq,
        "turn_message": message.id if turn_id else None,
        "turn_id": turn_id,
        "turn_expires_at": turn_expires_at,
        "id": message.id,
        "content": content,
        "status": message.status,
        "client_message_id": client_message_id,
    }
    try:
        stored_at = session.execute(_SEND, params).scalar()
    except IntegrityError:
        # Unreachable while every writer takes the row lock first; a clear answer if one ever does not.
        raise Conflict("the message conflicts with one stored meanwhile; retry") from None
    if stored_at is None:
        raise ratelimit.limited(TOO_MANY_MESSAGES, window_end)
    message.timestamp = stored_at
    turn = (message.id, turn_id) if turn_id else None
    shaped = views.message(message)
    events = [{"type": "message.created", "message": shaped}]
    outbox.defer(session, lambda: _push_then_invoke(audience, events, turn))
    return shaped, True


def _push_then_invoke(audience: list[str], events: list[dict[str, Any]], turn: tuple[uuid.UUID, uuid.UUID] | None) -> None:
    try:
        if audience:
            from bitworks.realtime import push_events_after_commit

            push_events_after_commit(audience, events)
    finally:
        if turn is not None:  # the turn must start even when a push failed
            invoke_dispatch(turn[0], turn[1])


def post_agent_message(session: Session, principal: Principal, conversation_id: uuid.UUID, body: Body) -> tuple[dict[str, Any], bool]:
    """An n8n workflow (API key with messages:write) or an admin (human handoff) posts an assistant
    or system message: a follow-up, a note, a human answer. Pushed like any reply; no turn changes.
    Idempotent through client_message_id, like user messages: (message view, created?)."""
    if not (principal.is_api_key or principal.is_admin):
        raise Forbidden("only the client's admins and API keys post assistant or system messages")
    conversation = visible_conversation(session, principal, conversation_id)
    if conversation.status == "closed":
        raise Conflict("the conversation is closed")
    if body.client_message_id is not None:
        existing = _by_client_message_id(session, conversation.id, body.client_message_id)
        if existing is not None:
            return _repeat(existing, body.content)
    author = f"api_key:{principal.api_key_id}" if principal.is_api_key else f"user:{principal.user_id}"
    try:
        with session.begin_nested():
            if _lock(session, conversation_id) is None:
                raise NotFound("conversation not found")
            message = Message(
                id=uuid.uuid4(),
                conversation_id=conversation_id,
                seq=_next_seq(session, conversation_id),
                role=body.role,
                content=body.content,
                status="sent",
                client_message_id=body.client_message_id,
                metadata_={**_without(body.metadata, PUSHED_KEY, DISPATCH_KEY), "author": author},
            )
            session.add(message)
            session.flush()
    except IntegrityError:
        existing = _by_client_message_id(session, conversation_id, body.client_message_id) if body.client_message_id else None
        if existing is None:
            raise
        return _repeat(existing, body.content)
    session.refresh(message)
    shaped = views.message(message)
    events = [{"type": "message.created", "message": shaped}]
    outbox.defer(session, lambda: _push_events(conversation_id, events))  # no turn: push only
    return shaped, True


def retry_message(session: Session, principal: Principal, message_id: uuid.UUID) -> dict[str, Any]:
    """A failed user message goes back to pending; it starts a turn unless one is running."""
    found = session.get(Message, message_id)
    if found is None:
        raise NotFound("message not found")
    conversation = owned_conversation(session, principal, found.conversation_id)
    if conversation.status == "closed":
        raise Conflict("the conversation is closed")
    if found.role != "user" or found.status != "failed":
        raise Conflict("only a failed user message can be retried")
    assert principal.user_id is not None
    _rate_limit(session, _client_settings(session, conversation.client_id), principal.user_id)
    locked = _lock(session, found.conversation_id)
    message = _fresh_message(session, message_id)
    if locked is None or message is None:
        raise NotFound("message not found")
    conversation = locked
    if message.status != "failed":  # someone else retried it meanwhile
        raise Conflict("only a failed user message can be retried")
    message.status = "pending"
    message.error = None
    message.metadata_ = _without(message.metadata_, DISPATCH_KEY)
    turn = _start_turn(session, conversation, message.id) if conversation.active_message_id is None else None
    session.flush()
    _after_commit(session, conversation.id, [], invoke=turn)
    return {"message": views.message(message)}


# -- ending a turn ----------------------------------------------------------------------------------
def _active_turn(session: Session, message_id: uuid.UUID, turn_id: uuid.UUID) -> tuple[Conversation, Message] | None:
    """Lock the conversation; (conversation, message) while that turn is still the active one."""
    found = session.get(Message, message_id)
    if found is None:
        return None
    conversation = _lock(session, found.conversation_id)
    message = _fresh_message(session, message_id)
    if conversation is None or message is None or not _is_turn(conversation, message_id, turn_id) or message.status != "pending":
        return None
    return conversation, message


def complete_turn(
    session: Session,
    message_id: uuid.UUID,
    turn_id: uuid.UUID,
    content: str,
    metadata: dict[str, Any] | None = None,
    *,
    dispatch_function: str | None = None,
) -> Message | None:
    """Store the reply of the active turn and start the next one; None when that turn is over."""
    active = _active_turn(session, message_id, turn_id)
    if active is None:
        return None
    conversation, message = active
    reply = Message(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        seq=_next_seq(session, conversation.id),
        role="assistant",
        content=content,
        status="sent",
        in_reply_to=message.id,
        metadata_=_without(metadata, PUSHED_KEY),  # "pushed" is ours: set once the push went out
    )
    session.add(reply)
    message.status = "replied"
    message.error = None
    message.metadata_ = _without(message.metadata_, DISPATCH_KEY)
    nxt = _end_turn(session, conversation)
    session.flush()
    session.refresh(reply)
    events = [{"type": "message.created", "message": views.message(reply)}, _typing(conversation.id, "off")]
    _after_commit(session, conversation.id, events, mark_pushed=reply.id, invoke=nxt, dispatch_function=dispatch_function)
    return reply


def fail_turn(
    session: Session,
    message_id: uuid.UUID,
    turn_id: uuid.UUID,
    code: str,
    message_text: str,
    *,
    dispatch_function: str | None = None,
    only_if_expired: bool = False,
) -> bool:
    """The user message of the active turn becomes failed; the next turn starts. False when that
    turn is over (or, with only_if_expired, was extended meanwhile)."""
    active = _active_turn(session, message_id, turn_id)
    if active is None:
        return False
    conversation, message = active
    if only_if_expired and (conversation.turn_expires_at is None or conversation.turn_expires_at >= _now()):
        return False
    error = {"code": code, "message": message_text}
    message.status = "failed"
    message.error = error
    message.metadata_ = _without(message.metadata_, DISPATCH_KEY)
    nxt = _end_turn(session, conversation)
    session.flush()
    events = [
        {"type": "message.failed", "message_id": message.id, "conversation_id": conversation.id, "error": error},
        _typing(conversation.id, "off"),
    ]
    _after_commit(session, conversation.id, events, invoke=nxt, dispatch_function=dispatch_function)
    _logger().info("turn failed", extra={"message_id": str(message_id), "code": code})
    return True


def _recover_unpushed(session: Session, message: Message, conversation: Conversation | None, dispatch_function: str | None) -> bool:
    """After a crash between commit and push: push the stored reply once, and make sure the turn
    that was started meanwhile gets its dispatch (a duplicate invoke is harmless: see the claim)."""
    if message.status != "replied" or conversation is None:
        return False
    reply = _reply_of(session, message.id)
    if reply is None or (reply.metadata_ or {}).get(PUSHED_KEY):
        return False
    invoke = None
    if conversation.active_message_id is not None and conversation.turn_id is not None:
        active = session.get(Message, conversation.active_message_id)
        if active is not None and DISPATCH_KEY not in (active.metadata_ or {}):
            invoke = (conversation.active_message_id, conversation.turn_id)
    events = [{"type": "message.created", "message": views.message(reply)}, _typing(conversation.id, "off")]
    _after_commit(session, conversation.id, events, mark_pushed=reply.id, invoke=invoke, dispatch_function=dispatch_function)
    _logger().info("pushing a stored reply that was never pushed", extra={"message_id": str(message.id)})
    return True


# -- dispatch ---------------------------------------------------------------------------------------
def _payload(session: Session, conversation: Conversation, message: Message, client: Client, turn_id: uuid.UUID) -> dict[str, Any]:
    from bitworks.services.context import DEFAULT_WINDOW, context_window_messages

    context = session.scalars(select(Context).where(Context.conversation_id == conversation.id)).first()
    window = context.context_window if context else DEFAULT_WINDOW
    history = context_window_messages(session, conversation.id, window, before_seq=message.seq)
    template = session.get(Template, conversation.template_id) if conversation.template_id else None
    return {
        "event": "message.created",
        "delivery_id": str(turn_id),
        "client": {"id": str(client.id), "name": client.name},
        "conversation": {"id": str(conversation.id), "title": conversation.title, "user_id": str(conversation.user_id)},
        "message": {
            "id": str(message.id),
            "seq": message.seq,
            "role": message.role,
            "content": message.content,
            "timestamp": iso(message.timestamp),
        },
        "context": {
            "context_window": window,
            "parameters": dict(context.parameters or {}) if context else {},
            "messages": [{"role": m.role, "content": m.content, "timestamp": iso(m.timestamp)} for m in history],
        },
        "template": {"id": str(template.id), "name": template.name, "content": template.content} if template else None,
    }


class _Claim:
    """What a claimed turn needs outside the transaction."""

    def __init__(self, url: str, payload: dict[str, Any], signing_secret: str, auth_header: tuple[str, str] | None) -> None:
        self.url = url
        self.payload = payload
        self.signing_secret = signing_secret
        self.auth_header = auth_header
        self.reply_expires_at: datetime | None = None


def _claim(session: Session, message_id: uuid.UUID, turn_id: uuid.UUID, time_left: float, dispatch_function: str | None) -> _Claim | str:
    found = session.get(Message, message_id)
    if found is None:
        return "gone"
    conversation = _lock(session, found.conversation_id)
    message = _fresh_message(session, message_id)
    if message is None:
        return "gone"
    if not _is_turn(conversation, message_id, turn_id) or message.status != "pending":
        return "recovered" if _recover_unpushed(session, message, conversation, dispatch_function) else "noop"
    assert conversation is not None
    state = (message.metadata_ or {}).get(DISPATCH_KEY) or {}
    if state.get("state") == "awaiting_reply":
        return "noop"
    lease = state.get("lease_until")
    if state.get("state") == "sending" and isinstance(lease, str) and _parse_time(lease) > _now():
        return "noop"  # another invocation is sending this very turn
    client = session.get(Client, conversation.client_id)
    assert client is not None
    settings = get_settings()
    url = client.n8n_webhook_url or settings.n8n_default_webhook_url
    if not url:
        fail_turn(session, message_id, turn_id, "upstream_error", "no n8n webhook URL is configured", dispatch_function=dispatch_function)
        return "failed"
    from bitworks.n8n import budget_seconds

    busy = min(time_left, budget_seconds(settings))
    message.metadata_ = {
        **(message.metadata_ or {}),
        DISPATCH_KEY: {"state": "sending", "lease_until": iso(_now() + timedelta(seconds=busy + LEASE_MARGIN_SECONDS))},
    }
    conversation.turn_expires_at = _now() + _turn_deadline(settings)
    auth_header = None
    if client.n8n_auth_header_name and client.n8n_auth_header_value:
        auth_header = (client.n8n_auth_header_name, client.n8n_auth_header_value)
    claim = _Claim(url, _payload(session, conversation, message, client, turn_id), client.signing_secret, auth_header)
    session.flush()
    # typing on goes out after this commit, before the POST
    _after_commit(session, conversation.id, [_typing(conversation.id, "on")])
    return claim


def _await_callback(session: Session, message_id: uuid.UUID, turn_id: uuid.UUID, expires_at: datetime) -> bool:
    """n8n acknowledged: the turn stays open until the reply token expires (typing stays on)."""
    found = session.get(Message, message_id)
    if found is None:
        return False
    conversation = _lock(session, found.conversation_id)
    message = _fresh_message(session, message_id)
    if conversation is None or message is None or not _is_turn(conversation, message_id, turn_id) or message.status != "pending":
        return False  # the callback was faster than n8n's acknowledgement
    conversation.turn_expires_at = expires_at
    message.metadata_ = {**(message.metadata_ or {}), DISPATCH_KEY: {"state": "awaiting_reply"}}
    return True


def run_dispatch(
    message_id: uuid.UUID, turn_id: uuid.UUID, *, function_name: str | None = None, time_left: Callable[[], float] | None = None
) -> str:
    """One turn's delivery to n8n (the dispatch Lambda). Idempotent against retries and duplicates.

    Returns what happened: replied | callback | failed | noop | recovered | gone."""
    from bitworks import n8n
    from bitworks.auth import issue_reply_token
    from bitworks.db import session_scope

    settings = get_settings()

    def left() -> float:
        return (time_left() if time_left else n8n.budget_seconds(settings)) - DISPATCH_SAFETY_SECONDS

    with session_scope() as session:
        claim = _claim(session, message_id, turn_id, left(), function_name)
    if isinstance(claim, str):
        return claim

    reply_url = f"{settings.public_api_url.rstrip('/')}/n8n/replies" if settings.public_api_url else None

    def body(_attempt: int) -> bytes:
        # A fresh reply token per attempt: its expiry counts from when n8n actually got the turn.
        token, exp = issue_reply_token(message_id, turn_id)
        claim.reply_expires_at = datetime.fromtimestamp(exp, timezone.utc)
        payload = {**claim.payload, "reply": {"url": reply_url, "token": token, "expires_at": iso(claim.reply_expires_at)}}
        return dumps(payload).encode()

    outcome = n8n.deliver(
        claim.url,
        body,
        signing_secret=claim.signing_secret,
        delivery_id=str(turn_id),
        auth_header=claim.auth_header,
        settings=settings,
        time_left=left(),
        logger=_logger(),
    )
    with session_scope() as session:
        if outcome.kind == "reply":
            assert outcome.content is not None
            stored = complete_turn(session, message_id, turn_id, outcome.content, outcome.metadata, dispatch_function=function_name)
            return "replied" if stored is not None else "noop"
        if outcome.kind == "callback":
            assert claim.reply_expires_at is not None
            return "callback" if _await_callback(session, message_id, turn_id, claim.reply_expires_at) else "noop"
        failed = fail_turn(
            session, message_id, turn_id, outcome.code or "upstream_error", outcome.message or "n8n failed", dispatch_function=function_name
        )
        return "failed" if failed else "noop"


def handle_dispatch_failure(message_id: uuid.UUID, turn_id: uuid.UUID, dispatch_function: str | None) -> str:
    """Lambda gave up on a dispatch (retries exhausted, event too old): fail the turn if still open."""
    from bitworks.db import session_scope

    with session_scope() as session:
        if fail_turn(session, message_id, turn_id, *FAILED_CALLBACK, dispatch_function=dispatch_function):
            return "failed"
        message = _fresh_message(session, message_id)
        if message is None:
            return "gone"
        conversation = _lock(session, message.conversation_id)
        return "recovered" if _recover_unpushed(session, message, conversation, dispatch_function) else "noop"


# -- the callback -----------------------------------------------------------------------------------
def authenticate_reply(authorization: str | None) -> dict[str, Any]:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing reply token")
    from bitworks.auth import decode_reply_token

    return decode_reply_token(authorization[7:].strip())


def receive_reply(session: Session, claims: dict[str, Any], body: Body) -> tuple[dict[str, Any], bool]:
    """POST /n8n/replies: (reply view, created?). A repeat returns the stored reply; a turn that
    ended meanwhile (failed, expired) is a 409."""
    if str(body.message_id) != claims["sub"]:
        raise Unauthorized("the reply token belongs to another message")
    existing = _reply_of(session, body.message_id)
    if existing is not None:
        return views.message(existing), False
    reply = complete_turn(session, body.message_id, uuid.UUID(claims["tid"]), body.content, body.metadata)
    if reply is None:
        existing = _reply_of(session, body.message_id)  # a concurrent callback won the race
        if existing is not None:
            return views.message(existing), False
        raise Conflict("this turn is no longer active")
    return views.message(reply), True


# -- the sweeper ------------------------------------------------------------------------------------
def sweep(dispatch_function: str | None = None) -> dict[str, int]:
    """Scheduled housekeeping; each step in its own transaction so one cannot undo another."""
    from bitworks.db import session_scope
    from bitworks.realtime import close_connections

    counts = {
        "turns_expired": 0,
        "turns_started": 0,
        "connections_removed": 0,
        "rate_limits_purged": 0,
        "tickets_purged": 0,
        "imports_expired": 0,
        "replies_repushed": 0,
    }

    with session_scope() as session:
        expired = session.execute(
            select(Conversation.active_message_id, Conversation.turn_id)
            .where(Conversation.active_message_id.is_not(None), Conversation.turn_expires_at < func.now())
            .order_by(Conversation.turn_expires_at)
            .limit(SWEEP_BATCH)
        ).all()
    for message_id, turn_id in expired:
        try:
            with session_scope() as session:
                if fail_turn(
                    session,
                    message_id,
                    turn_id,
                    "upstream_timeout",
                    "the assistant did not answer in time",
                    dispatch_function=dispatch_function,
                    only_if_expired=True,
                ):
                    counts["turns_expired"] += 1
        except Exception:  # noqa: BLE001 - one bad row must not stop the sweep
            _logger().exception("failing an expired turn failed", extra={"message_id": str(message_id)})

    # Pending messages with no turn running (should not happen; kept so none waits for ever).
    with session_scope() as session:
        stalled = list(
            session.scalars(
                select(Message.conversation_id)
                .join(Conversation, Conversation.id == Message.conversation_id)
                .where(Message.status == "pending", Message.role == "user", Conversation.active_message_id.is_(None))
                .distinct()
                .limit(SWEEP_BATCH)
            )
        )
    for conversation_id in stalled:
        with session_scope() as session:
            conversation = _lock(session, conversation_id)
            if conversation is not None and conversation.active_message_id is None:
                nxt = _end_turn(session, conversation)
                if nxt is not None:
                    _after_commit(session, conversation.id, [], invoke=nxt, dispatch_function=dispatch_function)
                    counts["turns_started"] += 1

    with session_scope() as session:
        now = _now()
        gone = list(
            session.scalars(
                delete(Connection)
                .where((Connection.connected_at < now - CONNECTION_MAX_AGE) | (Connection.last_seen_at < now - CONNECTION_MAX_IDLE))
                .returning(Connection.connection_id)
            )
        )
        counts["connections_removed"] = len(gone)
    if gone:
        close_connections(gone)

    # Replies whose push failed (API Gateway down past the retries): push them again, by id, which
    # the clients merge; "pushed" is set once a push reached every socket (or found it gone).
    with session_scope() as session:
        now = _now()
        unpushed = session.execute(
            select(Message.id, Message.conversation_id)
            .where(
                text(UNPUSHED_REPLY),  # literally the partial index's predicate, so the planner uses it
                Message.timestamp < now - REPUSH_AFTER,
                Message.timestamp > now - REPUSH_WITHIN,
            )
            .order_by(Message.timestamp)
            .limit(SWEEP_BATCH)
        ).all()
    for reply_id, conversation_id in unpushed:
        try:
            with session_scope() as session:
                reply = session.get(Message, reply_id)
                event = {"type": "message.created", "message": views.message(reply)} if reply is not None else None
            if event is not None:
                _push_events(conversation_id, [event], mark_pushed=reply_id)
                counts["replies_repushed"] += 1
        except Exception:  # noqa: BLE001 - one bad row must not stop the sweep
            _logger().exception("re-pushing a reply failed", extra={"message_id": str(reply_id)})

    with session_scope() as session:
        counts["rate_limits_purged"] = ratelimit.purge_expired(session)
        result = session.execute(delete(WsTicket).where(WsTicket.expires_at < func.now()))
        counts["tickets_purged"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    with session_scope() as session:
        from bitworks.services.imports import expire_stale

        counts["imports_expired"] = expire_stale(session)
    return counts
