"""WebSocket API: $connect, route selection, two-way responses, $disconnect, limits."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .conftest import Env, wait_for


def _msg(action: str, **extra: object) -> str:
    return json.dumps({"meta": {"action": action}, **extra})


def test_connect_and_two_way_route(emu: Env) -> None:
    with connect(f"{emu.ws}/dev?x=1") as ws:
        ws.send(_msg("echo", n=1))
        reply = json.loads(ws.recv(timeout=10))
        assert reply["route"] == "echo" and reply["eventType"] == "MESSAGE" and reply["stage"] == "dev"
        assert json.loads(reply["body"]) == {"meta": {"action": "echo"}, "n": 1} and reply["hasMessageId"]
        assert reply["connectionId"].endswith("=") and len(reply["connectionId"]) == 16


def test_default_route_for_unmatched_and_non_json(emu: Env) -> None:
    with connect(emu.ws) as ws:
        ws.send(_msg("nope"))
        assert json.loads(ws.recv(timeout=10))["route"] == "$default"
        ws.send("not json at all")
        reply = json.loads(ws.recv(timeout=10))
        assert reply["route"] == "$default" and reply["body"] == "not json at all"


def test_connect_rejected_by_status(emu: Env) -> None:
    with pytest.raises(InvalidStatus) as exc:
        connect(f"{emu.ws}/dev?reject=1")
    assert exc.value.response.status_code == 401


def test_connect_handler_exception_is_500(emu: Env) -> None:
    with pytest.raises(InvalidStatus) as exc:
        connect(f"{emu.ws}/dev?boom=1")
    assert exc.value.response.status_code == 500
    with connect(emu.ws) as ws:  # still serving
        ws.send(_msg("echo"))
        assert ws.recv(timeout=10)


def test_disconnect_runs_on_client_close(emu: Env) -> None:
    with connect(emu.ws) as ws:
        ws.send(_msg("echo"))
        conn_id = json.loads(ws.recv(timeout=10))["connectionId"]
    ev = wait_for(lambda: next((r for r in emu.records("disconnect") if r["requestContext"]["connectionId"] == conn_id), None))
    rc = ev["requestContext"]
    assert rc["eventType"] == "DISCONNECT" and rc["routeKey"] == "$disconnect"
    assert rc["disconnectStatusCode"] == 1000 and "disconnectReason" in rc


def test_message_too_big_closes_1009(emu: Env) -> None:
    with connect(emu.ws, max_size=None) as ws:
        ws.send("x" * (128 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as exc:
            ws.recv(timeout=10)
    assert exc.value.rcvd is not None and exc.value.rcvd.code == 1009
    assert exc.value.rcvd.reason == "Message too big"


def test_connect_selects_subprotocol(emu: Env) -> None:
    with connect(emu.ws, subprotocols=["token.abc"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "token.abc"
        ws.send(_msg("echo"))
        assert json.loads(ws.recv(timeout=10))["route"] == "echo"
