"""The embeddable chat widget on the demo page, end to end through the local stack."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import FAIL_ONCE, HOLD, Stack

pytestmark = pytest.mark.browser

WIDGET = "#bitworks-chat-widget"


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def open_signed_in(page: Any, stack: Stack) -> None:
    page.goto(stack.demo_url())
    page.get_by_role("button", name="Chat with Demo Shop").click()
    expect()(page.get_by_label("Email")).to_be_focused()
    page.get_by_label("Email").fill(stack.creds["user"]["email"])
    page.get_by_label("Password").fill(stack.creds["user"]["password"])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect()(page.get_by_role("button", name="New conversation")).to_be_visible()
    expect()(page.locator(WIDGET)).to_have_attribute("data-state", "online")


def new_conversation(page: Any) -> None:
    page.get_by_role("button", name="New conversation").click()
    expect()(page.get_by_label("Message", exact=True)).to_be_focused()


def send(page: Any, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")


def assistant_messages(page: Any) -> Any:
    return page.locator(".msg.assistant")


def test_sign_in_send_see_typing_then_reply(page: Any, stack: Stack, shot: Any) -> None:
    open_signed_in(page, stack)
    new_conversation(page)
    stack.assistant.arm()
    send(page, f"{HOLD} Do you ship to Lisbon?")

    mine = page.locator(".msg.user").last
    expect()(mine).to_contain_text("Do you ship to Lisbon?")
    expect()(mine).to_have_attribute("data-seq", "1")  # acknowledged: message.created with its seq
    typing = page.locator(".typing")
    expect()(typing).to_be_visible()  # the assistant is held: typing stays on until released
    assert stack.assistant.held.wait(10)

    stack.assistant.release()
    reply = assistant_messages(page).last
    expect()(reply).to_contain_text("You said")
    expect()(reply).to_contain_text("Do you ship to Lisbon?")
    expect()(reply).to_have_attribute("data-seq", "2")
    expect()(typing).to_be_hidden()
    expect()(page.locator(".msg.user").last).to_have_attribute("data-status", "replied")
    send(page, "And how long does it take?")
    expect()(assistant_messages(page)).to_have_count(2)
    shot(page, "widget.png", docs=True)
    assert page.errors == []


def test_recovers_after_connection_drop_and_catches_up(page: Any, stack: Stack) -> None:
    open_signed_in(page, stack)
    new_conversation(page)
    send(page, "first question")
    expect()(assistant_messages(page)).to_have_count(1)

    # 1. A dropped socket reconnects by itself (fresh ticket, backoff with jitter).
    before = set(stack.connection_ids())
    page.evaluate("window.__bitworks.dropSocket()")
    stack.wait_until(lambda: set(stack.connection_ids()) - before, what="a new WebSocket connection")
    expect()(page.locator(WIDGET)).to_have_attribute("data-state", "online")

    # 2. The server closes every socket; while the widget is away (reconnects held) a message goes
    #    over HTTP and its reply arrives with nobody connected to receive the push.
    page.evaluate("window.__bitworks.pauseReconnect(true)")
    assert stack.drop_all_connections() >= 1
    expect()(page.locator(WIDGET)).to_have_attribute("data-state", "offline")
    send(page, "sent while offline")
    expect()(page.locator(".msg.user").last).to_have_attribute("data-seq", "3")  # stored via HTTP POST
    token = stack.login("user")
    conversation_id = page.locator(".log").get_attribute("data-conversation")
    assert conversation_id

    def reply_stored() -> bool:
        status, msgs = stack.call("GET", f"/conversations/{conversation_id}/messages?limit=10", token=token)
        assert status == 200, msgs
        return any(m["role"] == "assistant" and "sent while offline" in m["content"] for m in msgs["items"])

    stack.wait_until(reply_stored, what="the reply to be stored while disconnected")
    expect()(assistant_messages(page)).to_have_count(1)  # not pushed: nobody was connected

    # 3. Reconnect: the widget catches up with GET ...?after=<last seq seen>.
    page.evaluate("window.__bitworks.pauseReconnect(false)")
    expect()(page.locator(WIDGET)).to_have_attribute("data-state", "online")
    expect()(assistant_messages(page)).to_have_count(2)
    expect()(assistant_messages(page).last).to_contain_text("sent while offline")
    seqs = [int(s) for s in page.locator(".msg").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == sorted(seqs) == [1, 2, 3, 4]  # ordered by seq, no duplicates
    assert page.errors == []


def test_failed_reply_shows_retry(page: Any, stack: Stack) -> None:
    open_signed_in(page, stack)
    new_conversation(page)
    send(page, f"{FAIL_ONCE} where is my order?")
    failed = page.locator(".msg.user.failed")
    expect()(failed).to_be_visible()
    expect()(failed.locator(".err")).not_to_be_empty()
    retry = failed.get_by_role("button", name=re.compile("^Retry"))
    retry.click()
    expect()(assistant_messages(page)).to_have_count(1)
    expect()(assistant_messages(page).last).to_contain_text("where is my order?")
    expect()(page.locator(".msg.user.failed")).to_have_count(0)


def test_markup_in_messages_is_shown_as_text(page: Any, stack: Stack) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    open_signed_in(page, stack)
    new_conversation(page)
    send(page, evil)
    mine = page.locator(".msg.user").last.locator("p.content")
    expect()(mine).to_have_text(evil)
    expect()(assistant_messages(page)).to_have_count(1)
    expect()(assistant_messages(page).last).to_contain_text("<script>alert(1)</script>")
    assert page.locator(".log script, .log img").count() == 0
    assert page.dialogs == []
    assert page.errors == []


def test_keyboard_and_narrow_screen(page: Any, stack: Stack, shot: Any) -> None:
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(stack.demo_url())
    launcher = page.get_by_role("button", name="Chat with Demo Shop")
    launcher.focus()
    page.keyboard.press("Enter")
    expect()(launcher).to_have_attribute("aria-expanded", "true")
    expect()(page.get_by_label("Email")).to_be_focused()
    box = page.locator(".panel").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    page.keyboard.type(stack.creds["user"]["email"])
    page.keyboard.press("Tab")
    page.keyboard.type("wrong password")
    page.keyboard.press("Enter")
    expect()(page.get_by_role("alert").filter(has_text=re.compile(r"\S"))).to_be_visible()  # the API's error message
    page.keyboard.press("Escape")
    expect()(launcher).to_be_focused()
    expect()(launcher).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect()(page.get_by_label("Password")).to_be_visible()
    shot(page, "widget-360.png")
