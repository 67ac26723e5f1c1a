"""Hostile WebSocket frames through the emulator (real sockets) and hostile POST /n8n/replies
(in-process handler): every bad frame gets an error event on its own connection, frames over
API Gateway's 128 KB close that connection (1009), and a parallel healthy client keeps getting
pongs throughout. n8n replies: no 5xx, the documented error shape, nothing stored without a
valid reply token."""

from __future__ import annotations

import asyncio
import json
import string
import threading
import time
import uuid
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.hardening.support import conversation, record, tenant

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ACTIONS = ["sendMessage", "subscribe", "ping"]
junk_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), junk_text)
json_values = st.recursive(
    scalars, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(junk_text, kids, max_size=4)), max_leaves=20
)
hostile_objects = st.fixed_dictionaries(
    {},
    optional={
        "action": st.one_of(
            st.sampled_from(["sendMessage", "subscribe"]),
            junk_text,
            st.integers(),
            st.none(),
            st.lists(st.integers(), max_size=3),
            st.text(min_size=201, max_size=400),
        ),
        "conversation_id": st.one_of(st.uuids().map(str), junk_text, st.integers(), json_values),
        "content": st.one_of(junk_text, st.integers(), st.text(min_size=16001, max_size=16010), json_values, st.just("\x00")),
        "client_message_id": st.one_of(junk_text, st.integers(), st.text(min_size=201, max_size=300)),
        "extra\x00": json_values,
    },
)
frames = st.one_of(
    junk_text.filter(lambda t: not _is_ping(t)),  # not JSON (mostly)
    hostile_objects.map(json.dumps),  # wrong types, unknown actions
    json_values.map(json.dumps).filter(lambda t: not _is_ping(t)),  # JSON, not an object
    st.integers(min_value=50, max_value=3000).map(lambda n: "[" * n + "]" * n),  # deep nesting
    st.integers(min_value=50, max_value=3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.integers(min_value=1000, max_value=120_000).map(
        lambda n: json.dumps({"action": "sendMessage", "content": "x" * n, "conversation_id": str(uuid.uuid4())})
    ),
    st.sampled_from(
        [
            '{"action": "ping"',
            "\x00",
            "\ud7ff",
            "null",
            "[]",
            '{"action": null}',
            '{"action": "PING"}',
            '{"action": "sendMessage"}',
            '{"action": "subscribe", "conversation_id": "../../etc"}',
        ]
    ),
)


def _is_ping(text: str) -> bool:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("action") in ACTIONS and data.get("action") == "ping"


class Loop:
    """An asyncio loop on a thread: hypothesis drives it synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_hostile_websocket_frames(hstack, hhttp, factory):
    t = tenant(factory, users=2)
    conversation(hhttp, t["tokens"][0])
    url = hstack.ws_url
    loop = Loop()
    state: dict[str, Any] = {"pongs": 0, "ping_errors": [], "max_pong": 0.0, "stop": False}
    counts = {"frames": 0, "error_events": 0, "closed_oversize": 0, "reconnects": 0}

    async def healthy() -> None:
        async with websockets.connect(f"{url}/?ticket={hhttp.ticket(t['tokens'][1])}") as ws:
            while not state["stop"]:
                began = time.monotonic()
                await ws.send('{"action": "ping"}')
                try:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                except Exception as exc:
                    state["ping_errors"].append(repr(exc))
                    return
                if reply != {"type": "pong"}:
                    state["ping_errors"].append(reply)
                state["pongs"] += 1
                state["max_pong"] = max(state["max_pong"], time.monotonic() - began)
                await asyncio.sleep(0.05)  # pacing, not synchronisation

    hostile: dict[str, Any] = {}

    async def connect() -> None:
        hostile["ws"] = await websockets.connect(f"{url}/?ticket={hhttp.ticket(t['tokens'][0])}", max_size=None)

    async def exchange(frame: str) -> None:
        ws = hostile["ws"]
        await ws.send(frame)
        if len(frame.encode()) > 128 * 1024:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 30)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009, info.value
            counts["closed_oversize"] += 1
            counts["reconnects"] += 1
            await connect()
            return
        try:
            event = json.loads(await asyncio.wait_for(ws.recv(), 30))
        except TimeoutError:
            raise AssertionError(f"no answer to a frame of {len(frame)} chars: {frame[:120]!r}") from None
        assert event.get("type") == "error", (frame[:200], event)
        assert set(event) == {"type", "action", "client_message_id", "error"}, event
        assert set(event["error"]) <= {"code", "message", "details", "retry_after"}, event
        assert event["error"]["code"] in {
            "invalid_json",
            "bad_request",
            "validation_error",
            "not_found",
            "forbidden",
            "payload_too_large",
            "unauthorized",
        }, event
        counts["error_events"] += 1

    loop.run(connect())
    pinger = asyncio.run_coroutine_threadsafe(healthy(), loop.loop)
    try:
        loop.run(exchange('{"action": "nope"}'))  # warm the $default route

        @settings(max_examples=120, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(frame=frames)
        def fuzz(frame: str) -> None:
            counts["frames"] += 1
            loop.run(exchange(frame))

        fuzz()
        for size in (129 * 1024, 200 * 1024):  # over the limit: API Gateway closes with 1009
            counts["frames"] += 1
            loop.run(exchange(json.dumps({"action": "ping", "pad": "y" * size})))
        loop.run(exchange("\x00" * 10))
        counts["frames"] += 1
        # after all that, the hostile connection itself (a fresh one after closes) still works
        loop.run(hostile["ws"].send('{"action": "ping"}'))
        assert json.loads(loop.run(asyncio.wait_for(hostile["ws"].recv(), 30))) == {"type": "pong"}
    finally:
        state["stop"] = True
        pinger.result(60)
        loop.run(hostile["ws"].close())
        loop.close()
    assert not state["ping_errors"], state["ping_errors"][:5]
    assert state["pongs"] >= 5, state
    record(
        "ws_fuzz",
        frames_sent=counts["frames"],
        error_events=counts["error_events"],
        oversize_closed_1009=counts["closed_oversize"],
        healthy_pongs=state["pongs"],
        healthy_max_pong_seconds=round(state["max_pong"], 3),
    )


reply_bodies = st.one_of(
    st.fixed_dictionaries(
        {
            "message_id": st.one_of(st.uuids().map(str), junk_text, st.integers()),
            "content": st.one_of(junk_text, st.text(min_size=16001, max_size=16005), st.integers(), st.none()),
        },
        optional={"metadata": json_values, "extra": json_values},
    ).map(json.dumps),
    json_values.map(json.dumps),
    junk_text,
    st.integers(min_value=100, max_value=5000).map(lambda n: "[" * n + "]" * n),
)
tokens = st.one_of(
    st.none(),
    junk_text,
    st.text(alphabet=string.ascii_letters + string.digits + "._-", max_size=400),
    st.just("Bearer "),
    st.just("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
)


def test_n8n_replies_fuzz(api_client, db, factory):
    from sqlalchemy import text

    from bitworks.auth import issue_reply_token

    calls = {"n": 0, "statuses": {}}
    valid_token, _ = issue_reply_token(uuid.uuid4(), uuid.uuid4())  # a real token for a message that does not exist

    @settings(max_examples=250, deadline=None, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(body=reply_bodies, token=st.one_of(tokens, st.just(valid_token)), scheme=st.sampled_from(["Bearer ", "bearer ", "", "Basic "]))
    def fuzz(body: str, token: str | None, scheme: str) -> None:
        headers = {} if token is None else {"authorization": f"{scheme}{token}"}
        status, data, resp_headers = api_client.call("POST", "/n8n/replies", raw_body=body, headers=headers)
        calls["n"] += 1
        calls["statuses"][status] = calls["statuses"].get(status, 0) + 1
        assert status in (400, 401, 409, 413, 422), (status, data, body[:200])
        assert set(data) == {"error"} and set(data["error"]) <= {"code", "message", "details"}, data
        assert resp_headers.get("X-Content-Type-Options") == "nosniff"

    fuzz()
    with db.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM messages")).scalar()
    assert stored == 0
    record("n8n_replies_fuzz", cases_run=calls["n"], statuses={str(k): v for k, v in sorted(calls["statuses"].items())})
