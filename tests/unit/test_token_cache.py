"""decode_access_token remembers tokens it verified: a repeat skips PyJWT but is still refused
once expired, and nothing else gets through because of the cache."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bitworks import auth
from bitworks.errors import Unauthorized


@pytest.fixture
def pyjwt_calls(monkeypatch: pytest.MonkeyPatch) -> Any:
    from bitworks.config import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")  # never connected to
    get_settings.cache_clear()
    calls: list[str] = []
    real = auth._decode_access_token

    def counted(token: str) -> dict[str, Any]:
        calls.append(token)
        return real(token)

    monkeypatch.setattr(auth, "_decode_access_token", counted)
    monkeypatch.setattr(auth, "_VERIFIED", {})
    yield calls
    monkeypatch.undo()
    get_settings.cache_clear()


def _token() -> tuple[str, int]:
    token, _ttl, exp = auth.issue_access_token(uuid.uuid4(), uuid.uuid4(), "user", 3)
    return token, exp


def test_a_repeat_skips_pyjwt_and_gets_the_same_claims(pyjwt_calls: list[str]) -> None:
    token, _ = _token()
    first = auth.decode_access_token(token)
    second = auth.decode_access_token(token)
    assert first == second and first["ver"] == 3
    assert pyjwt_calls == [token]
    second["role"] = "superadmin"  # a caller's change does not leak into the cache
    assert auth.decode_access_token(token)["role"] == "user"


def test_a_cached_token_is_refused_once_expired(pyjwt_calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    token, exp = _token()
    auth.decode_access_token(token)
    monkeypatch.setattr(auth.time, "time", lambda: float(exp))
    with pytest.raises(Unauthorized):
        auth.decode_access_token(token)
    assert pyjwt_calls == [token] and auth._VERIFIED == {}  # refused from the cache, and forgotten


def test_a_tampered_copy_of_a_cached_token_is_verified_and_refused(pyjwt_calls: list[str]) -> None:
    token, _ = _token()
    auth.decode_access_token(token)
    head, body, sig = token.split(".")
    forged = ".".join((head, body, sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")))
    with pytest.raises(Unauthorized):
        auth.decode_access_token(forged)
    assert pyjwt_calls == [token, forged]


def test_the_cache_is_bounded(pyjwt_calls: list[str]) -> None:
    tokens = [_token()[0] for _ in range(auth._VERIFIED_MAX + 20)]
    for token in tokens:
        auth.decode_access_token(token)
    assert len(auth._VERIFIED) <= auth._VERIFIED_MAX
    auth.decode_access_token(tokens[-1])  # the newest is still known
    assert len(pyjwt_calls) == len(tokens)


def test_new_settings_forget_what_was_verified(pyjwt_calls: list[str]) -> None:
    from bitworks.config import get_settings

    token, _ = _token()
    auth.decode_access_token(token)
    get_settings.cache_clear()  # e.g. another issuer or audience
    auth.decode_access_token(token)
    assert pyjwt_calls == [token, token]
