"""The admin console: an admin manages templates (with a live preview) and users, follows a
conversation live and takes it over (human handoff); a superadmin creates a client and sees its
signing secret once."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.browser.conftest import Stack

pytestmark = pytest.mark.browser


def expect() -> Any:
    from playwright.sync_api import expect as _expect

    return _expect


def sign_in(page: Any, stack: Stack, role: str) -> None:
    page.goto(stack.url(f"console.html?ws={stack.ws_url}"))
    form = page.locator("#signin-form")
    expect()(form.get_by_label("Email")).to_be_focused()
    form.get_by_label("Email").fill(stack.creds[role]["email"])
    form.get_by_label("Password").fill(stack.creds[role]["password"])
    form.get_by_label("Client ID").fill(stack.client_id if role != "superadmin" else "")
    form.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#who-text")).to_contain_text(stack.creds[role]["email"])


def test_admin_creates_a_template_and_a_user(page: Any, stack: Stack, shot: Any) -> None:
    sign_in(page, stack, "admin")

    # Users: create one, then change its role.
    email = f"ada-{uuid.uuid4().hex[:6]}@demo.local"
    form = page.locator("#user-form")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password").fill("a long enough password")
    form.get_by_label("Display name").fill("Ada <b>Lovelace</b>")
    form.get_by_label("Role").select_option("admin")
    form.get_by_role("button", name="Create user").click()
    row = page.locator("#users-table tbody tr", has_text=email)
    expect()(row).to_be_visible()
    expect()(row.locator("td").nth(1)).to_have_text("Ada <b>Lovelace</b>")  # text, not markup
    expect()(row.get_by_label(f"Role of {email}")).to_have_value("admin")
    row.get_by_label(f"Role of {email}").select_option("user")
    expect()(page.locator("#flash")).to_contain_text(f"{email} is now user")

    # Templates: a live preview fills {{variables}} from inputs.
    page.get_by_role("button", name="Templates").click()
    page.get_by_role("button", name="New template").click()
    tform = page.locator("#template-form")
    tform.get_by_label("Name", exact=True).fill("Order status")
    tform.get_by_label("Description").fill("Answer questions about an order")
    tform.get_by_label("Content").fill("Hello {{ name }}, order {{order_id}} ships on {{date}}.")
    preview = page.locator("#template-preview")
    expect()(preview).to_have_text("Hello {{ name }}, order {{order_id}} ships on {{date}}.")
    page.locator('#template-vars input[data-var="name"]').fill("Ada")
    page.locator('#template-vars input[data-var="order_id"]').fill("A-1042")
    expect()(preview).to_have_text("Hello Ada, order A-1042 ships on {{date}}.")
    tform.get_by_role("button", name="Create template").click()
    expect()(page.locator("#flash")).to_contain_text("Saved template “Order status”")
    expect()(page.locator("#templates-list")).to_contain_text("Order status")
    expect()(page.locator("#template-form-h")).to_have_text("Edit “Order status”")
    expect()(preview).to_have_text("Hello Ada, order A-1042 ships on {{date}}.")  # kept across the save
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "console.png", docs=True, full_page=True)

    status, data = stack.call("GET", "/templates", token=stack.login("admin"))
    assert status == 200
    assert [t["variables"] for t in data["items"] if t["name"] == "Order status"] == [["name", "order_id", "date"]]
    assert page.dialogs == []
    assert page.errors == []


def test_admin_sees_a_conversation_and_edits_its_context(page: Any, stack: Stack) -> None:
    token = stack.login("user")
    status, data = stack.call("POST", "/conversations", {"title": "Console check"}, token=token)
    assert status == 201, data
    conversation_id = data["conversation"]["id"]
    body = {"content": "hello from the user"}
    status, data = stack.call("POST", f"/conversations/{conversation_id}/messages", body, token=token)
    assert status == 201, data

    sign_in(page, stack, "admin")
    page.get_by_role("button", name="Conversations").click()
    page.locator("#conversations-list li", has_text="Console check").get_by_role("button").click()
    expect()(page.locator("#conv-messages")).to_contain_text("hello from the user")
    cform = page.locator("#context-form")
    cform.get_by_label(re.compile("^Context window")).fill("5")
    cform.get_by_label(re.compile("^Parameters")).fill('{"tier": "gold"}')
    cform.get_by_role("button", name="Save context").click()
    expect()(page.locator("#flash")).to_contain_text("Context saved")
    status, data = stack.call("GET", f"/conversations/{conversation_id}/context", token=token)
    assert status == 200
    assert data["context"]["context_window"] == 5
    assert data["context"]["parameters"] == {"tier": "gold"}


def test_superadmin_creates_a_client_and_sees_the_secret_once(page: Any, stack: Stack) -> None:
    sign_in(page, stack, "superadmin")
    expect()(page.get_by_role("button", name="Clients")).to_have_attribute("aria-current", "page")
    page.get_by_role("button", name="New client").click()
    form = page.locator("#client-form")
    slug = f"shop-{uuid.uuid4().hex[:6]}"
    form.get_by_label("Name", exact=True).fill("Another Shop")
    form.get_by_label("Slug").fill(slug)
    form.get_by_label("n8n webhook URL").fill("https://n8n.example/webhook/shop")
    form.get_by_label("n8n auth header name").fill("X-Shop-Auth")
    form.get_by_label(re.compile("^n8n auth header value")).fill("s3cret-header")
    form.get_by_label("Allow sign-up").check()
    form.get_by_label(re.compile("^Allowed origins")).fill("https://another.example")
    form.get_by_role("button", name="Create client").click()
    secret = page.locator("#secret-value")
    expect()(secret).to_have_text(re.compile(r"\S{16,}"))
    first = secret.text_content()
    page.get_by_role("button", name="I have saved it").click()
    expect()(page.locator("#secret-box")).to_be_hidden()
    expect()(form.get_by_label(re.compile("^n8n auth header value"))).to_have_value("")  # write-only
    expect()(form.get_by_label(re.compile("^n8n auth header value"))).to_have_attribute("placeholder", re.compile("stored"))
    form.get_by_role("button", name="Rotate signing secret").click()
    expect()(secret).to_have_text(re.compile(r"\S{16,}"))
    assert secret.text_content() != first
    assert page.errors == []


def test_admin_follows_a_conversation_live_and_takes_it_over(page: Any, stack: Stack) -> None:
    token = stack.login("user")
    status, data = stack.call("POST", "/conversations", {"title": "Handoff check"}, token=token)
    assert status == 201, data
    conversation_id = data["conversation"]["id"]

    sign_in(page, stack, "admin")
    page.get_by_role("button", name="Conversations").click()
    page.locator("#conversations-list li", has_text="Handoff check").get_by_role("button").click()
    expect()(page.locator("#live-status")).to_contain_text("Live:")
    expect()(page.locator("#agent-form")).to_be_hidden()  # the assistant answers until someone takes over

    page.get_by_role("button", name="Take over").click()
    expect()(page.locator("#mode-label")).to_contain_text("A person is answering")
    assert stack.call("GET", f"/conversations/{conversation_id}", token=token)[1]["conversation"]["mode"] == "human"

    # The user writes: it shows in the console without a reload (pushed to the subscribed admin).
    status, data = stack.call("POST", f"/conversations/{conversation_id}/messages", {"content": "is anyone there?"}, token=token)
    assert status == 201 and data["message"]["status"] == "sent", data  # human mode: no AI turn
    expect()(page.locator("#conv-messages")).to_contain_text("is anyone there?")

    page.locator("#agent-form").get_by_label("Reply as the assistant").fill("Yes, Ada from support here.")
    page.locator("#agent-form").get_by_role("button", name="Send reply").click()
    expect()(page.locator("#conv-messages li.assistant")).to_have_count(1)  # the answer and its push, merged
    expect()(page.locator("#conv-messages li.assistant")).to_contain_text("Yes, Ada from support here.")

    status, data = stack.call("GET", f"/conversations/{conversation_id}/messages", token=token)
    assert status == 200
    assert [(m["role"], m["content"]) for m in data["items"]] == [
        ("user", "is anyone there?"),
        ("assistant", "Yes, Ada from support here."),
    ]
    assert data["items"][1]["metadata"]["author"].startswith("user:")

    page.get_by_role("button", name="Hand back to the assistant").click()
    expect()(page.locator("#mode-label")).to_contain_text("The assistant is answering")
    assert stack.call("GET", f"/conversations/{conversation_id}", token=token)[1]["conversation"]["mode"] == "bot"
    assert page.dialogs == []
    assert page.errors == []
