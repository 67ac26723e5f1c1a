// Bitworks Message — admin console (plain ES module, no build step). Server data is rendered with
// textContent only. Contracts: ARCHITECTURE.md (routes, {"items", "next_cursor"}, {"error": {...}}).

const API = (document.body.dataset.api || location.origin).replace(/\/+$/, "");
// The WebSocket API: data-ws, else ?ws= when it names this API's host (a link must not send a ticket
// elsewhere), else ws(s)://<host>:3001 (the local stack).
const WS = (() => {
  if (document.body.dataset.ws) return document.body.dataset.ws.replace(/\/+$/, "");
  const asked = new URLSearchParams(location.search).get("ws");
  try {
    if (asked && new URL(asked).hostname === new URL(API).hostname && /^wss?:$/.test(new URL(asked).protocol)) return asked.replace(/\/+$/, "");
  } catch {
    /* ignore a malformed override */
  }
  return `${location.protocol === "https:" ? "wss" : "ws"}://${new URL(API).hostname}:3001`;
})();
const STORE = "bitworks-console";
const $ = (sel, root = document) => root.querySelector(sel);

const state = {
  token: null,
  user: null,
  acting: null, // client id the superadmin is working in
  tab: "users",
  cursors: {},
  users: new Map(),
  templates: new Map(),
  clients: new Map(),
  template: null, // template being edited (null = new)
  client: null, // client being edited (null = new)
  conversation: null,
  olderCursor: null,
};

// -- helpers -----------------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const fmt = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
};

class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

function describe(err) {
  if (err instanceof ApiError) {
    const extra = err.details.filter((d) => d && d.field && d.message && !err.message.includes(d.message)).map((d) => `${d.field}: ${d.message}`);
    return [err.message, ...extra].join(" — ");
  }
  return "Network error: the API could not be reached.";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    let err;
    if (data && data.error) err = new ApiError(res.status, data.error.code, data.error.message || `Request failed (${res.status})`, data.error.details);
    else if (data && data.message) err = new ApiError(res.status, "gateway", data.message);
    else err = new ApiError(res.status, "http_error", `Request failed (${res.status})`);
    if (res.status === 401 && state.token && path !== "/auth/login") signOut("Your session has ended. Please sign in again.");
    throw err;
  }
  return data;
}

/** Query string with the acting client for a superadmin. */
function q(params = {}) {
  const all = { ...params };
  if (state.user && state.user.role === "superadmin" && state.acting) all.client_id = state.acting;
  const s = new URLSearchParams(Object.entries(all).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const str = s.toString();
  return str ? `?${str}` : "";
}

function withClient(body) {
  if (state.user && state.user.role === "superadmin" && state.acting) return { ...body, client_id: state.acting };
  return body;
}

function flash(text) {
  const el = $("#flash");
  el.textContent = text;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.textContent = ""; }, 6000);
}

function showError(section, err) {
  $(`#${section}-error`).textContent = err ? describe(err) : "";
}

/** Two-step destructive buttons: the first press asks, the second (within 5 s) acts. */
function confirmButton(button, label, action) {
  button.addEventListener("click", async () => {
    if (button.dataset.armed !== "1") {
      button.dataset.armed = "1";
      button.textContent = `Confirm: ${label}`;
      setTimeout(() => {
        button.dataset.armed = "";
        button.textContent = label;
      }, 5000);
      return;
    }
    button.dataset.armed = "";
    button.textContent = label;
    await action();
  });
}

/** Insert or replace the element with the same data-id (a list load and a create can overlap). */
function upsert(container, node, { prepend = false } = {}) {
  const existing = [...container.children].find((el) => el.dataset.id && el.dataset.id === node.dataset.id);
  if (existing) existing.replaceWith(node);
  else if (prepend) container.prepend(node);
  else container.append(node);
}

/** Each list load gets a generation: an answer to a superseded load is dropped. */
const generations = {};
function nextGeneration(name) {
  generations[name] = (generations[name] || 0) + 1;
  return generations[name];
}

function needsClient(section) {
  if (state.user.role === "superadmin" && !state.acting) {
    $(`#${section}-error`).textContent = "Pick a client (top right, or Clients → Manage this client) first.";
    return true;
  }
  return false;
}

// -- session -----------------------------------------------------------------------------------
function persist() {
  if (state.token) sessionStorage.setItem(STORE, JSON.stringify({ token: state.token, user: state.user, acting: state.acting }));
  else sessionStorage.removeItem(STORE);
}

function signOut(message = "") {
  live.close();
  state.token = null;
  state.user = null;
  state.acting = null;
  persist();
  $("#app").hidden = true;
  $("#who").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = message;
  $("#signin-email").focus();
}

async function signIn(event) {
  event.preventDefault();
  const email = $("#signin-email").value.trim();
  const password = $("#signin-password").value;
  const clientId = $("#signin-client").value.trim();
  if (!email || !password) {
    $("#signin-error").textContent = "Email and password are required.";
    (email ? $("#signin-password") : $("#signin-email")).focus();
    return;
  }
  const body = { email, password };
  if (clientId) body.client_id = clientId;
  try {
    const res = await api("POST", "/auth/login", body);
    if (!["admin", "superadmin"].includes(res.user.role)) {
      $("#signin-error").textContent = "This console is for administrators. Use the chat widget to talk with us.";
      return;
    }
    state.token = res.access_token;
    state.user = res.user;
    state.acting = res.user.client_id || null;
    localStorage.setItem("bitworks:console-client", clientId);
    $("#signin-password").value = "";
    persist();
    await enterApp();
  } catch (err) {
    $("#signin-error").textContent = describe(err);
    $("#signin-password").focus();
  }
}

async function enterApp() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#who").hidden = false;
  $("#who-text").textContent = `${state.user.email} (${state.user.role})`;
  const superadmin = state.user.role === "superadmin";
  $('[data-tab="clients"]').hidden = !superadmin;
  $("#acting-wrap").hidden = !superadmin;
  if (superadmin) await loadClients(true);
  await showTab(superadmin && !state.acting ? "clients" : state.tab);
}

// -- tabs --------------------------------------------------------------------------------------
async function showTab(name) {
  state.tab = name;
  for (const b of document.querySelectorAll(".tabs button")) {
    if (b.dataset.tab === name) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${name}`;
  $(`#${name}-h`).focus();
  if (name === "users") await loadUsers(true);
  if (name === "templates") await loadTemplates(true);
  if (name === "conversations") await loadConversations(true);
  if (name === "clients") await loadClients(true);
}

// -- users -------------------------------------------------------------------------------------
async function loadUsers(reset) {
  showError("users");
  const body = $("#users-table tbody");
  if (reset) {
    body.replaceChildren();
    state.users.clear();
    state.cursors.users = null;
  }
  if (needsClient("users")) return;
  const gen = nextGeneration("users");
  try {
    const res = await api("GET", `/users${q({ limit: 50, cursor: state.cursors.users })}`);
    if (gen !== generations.users) return;
    for (const u of res.items) {
      state.users.set(u.id, u);
      upsert(body, userRow(u));
    }
    state.cursors.users = res.next_cursor;
    $("#users-more").hidden = !res.next_cursor;
  } catch (err) {
    showError("users", err);
  }
}

function userRow(u) {
  const select = h("select", { "aria-label": `Role of ${u.email}`, disabled: u.role === "superadmin" || u.id === state.user.id });
  for (const r of ["user", "admin"]) select.append(h("option", { value: r, selected: u.role === r, text: r }));
  select.addEventListener("change", async () => {
    try {
      const res = await api("PUT", `/users/${u.id}`, { role: select.value });
      state.users.set(u.id, res.user);
      flash(`${res.user.email} is now ${res.user.role}.`);
    } catch (err) {
      select.value = u.role;
      showError("users", err);
    }
  });
  const del = h("button", { type: "button", class: "danger small", "aria-label": `Delete ${u.email}`, text: "Delete", hidden: u.id === state.user.id });
  const row = h("tr", { "data-id": u.id },
    h("td", { text: u.email }), h("td", { text: u.display_name || "" }), h("td", {}, select),
    h("td", { text: fmt(u.created_at) }), h("td", {}, del));
  confirmButton(del, "Delete", async () => {
    try {
      await api("DELETE", `/users/${u.id}`);
      state.users.delete(u.id);
      row.remove();
      flash(`Deleted ${u.email}.`);
      $("#users-h").focus();
    } catch (err) {
      showError("users", err);
    }
  });
  return row;
}

async function createUser(event) {
  event.preventDefault();
  const form = event.currentTarget;
  showError("users");
  if (needsClient("users")) return;
  const data = new FormData(form);
  const body = withClient({ email: String(data.get("email")).trim(), password: String(data.get("password")), role: data.get("role") });
  const name = String(data.get("display_name") || "").trim();
  if (name) body.display_name = name;
  try {
    const res = await api("POST", "/users", body);
    state.users.set(res.user.id, res.user);
    upsert($("#users-table tbody"), userRow(res.user), { prepend: true });
    form.reset();
    flash(`Created ${res.user.email} (${res.user.role}).`);
    form.querySelector("input").focus();
  } catch (err) {
    showError("users", err);
  }
}

// -- templates ---------------------------------------------------------------------------------
const VARIABLE = /{{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*}}/g;

async function loadTemplates(reset) {
  showError("templates");
  const list = $("#templates-list");
  if (reset) {
    list.replaceChildren();
    state.templates.clear();
    state.cursors.templates = null;
    editTemplate(null, false);
  }
  if (needsClient("templates")) return;
  const gen = nextGeneration("templates");
  try {
    const res = await api("GET", `/templates${q({ limit: 50, cursor: state.cursors.templates })}`);
    if (gen !== generations.templates) return;
    for (const t of res.items) {
      state.templates.set(t.id, t);
      upsert(list, templateItem(t));
    }
    state.cursors.templates = res.next_cursor;
    $("#templates-more").hidden = !res.next_cursor;
  } catch (err) {
    showError("templates", err);
  }
}

function templateItem(t) {
  return h("li", { "data-id": t.id }, h("button", { type: "button", text: t.name, onclick: () => editTemplate(t.id, true) }));
}

function editTemplate(id, focus) {
  const form = $("#template-form");
  const t = id ? state.templates.get(id) : null;
  state.template = t ? t.id : null;
  form.reset();
  form.elements.name.value = t ? t.name : "";
  form.elements.description.value = t ? t.description || "" : "";
  form.elements.content.value = t ? t.content : "";
  $("#template-form-h").textContent = t ? `Edit “${t.name}”` : "New template";
  $("#template-save").textContent = t ? "Save template" : "Create template";
  $("#template-delete").hidden = !t;
  for (const li of $("#templates-list").children) {
    const b = li.querySelector("button");
    if (li.dataset.id === state.template) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  renderPreview();
  if (focus) form.elements.name.focus();
}

function renderPreview() {
  const form = $("#template-form");
  const content = form.elements.content.value;
  const names = [...new Set([...content.matchAll(VARIABLE)].map((m) => m[1]))];
  const box = $("#template-vars");
  const existing = new Map([...box.querySelectorAll("input")].map((i) => [i.dataset.var, i]));
  for (const [name, input] of existing) if (!names.includes(name)) input.closest("label").remove();
  for (const name of names) {
    if (existing.has(name)) continue;
    const input = h("input", { type: "text", "data-var": name, autocomplete: "off" });
    input.addEventListener("input", renderPreview);
    box.append(h("label", { class: "var" }, h("span", { text: name }), input));
  }
  $("#template-vars-empty").hidden = names.length > 0;
  const values = Object.fromEntries([...box.querySelectorAll("input")].map((i) => [i.dataset.var, i.value]));
  // Built from text nodes: filled values and unfilled placeholders are distinguishable, never HTML.
  const preview = $("#template-preview");
  preview.replaceChildren();
  let last = 0;
  for (const m of content.matchAll(VARIABLE)) {
    preview.append(content.slice(last, m.index));
    const v = values[m[1]];
    preview.append(v ? h("mark", { class: "filled", text: v }) : h("mark", { class: "unfilled", text: m[0] }));
    last = m.index + m[0].length;
  }
  preview.append(content.slice(last));
}

async function saveTemplate(event) {
  event.preventDefault();
  showError("templates");
  if (needsClient("templates")) return;
  const form = event.currentTarget;
  const body = {
    name: form.elements.name.value.trim(),
    content: form.elements.content.value,
    description: form.elements.description.value.trim() || null,
  };
  try {
    let res;
    if (state.template) {
      res = await api("PUT", `/templates/${state.template}`, body);
    } else {
      res = await api("POST", "/templates", withClient(body));
    }
    upsert($("#templates-list"), templateItem(res.template), { prepend: true });
    state.templates.set(res.template.id, res.template);
    const values = [...$("#template-vars").querySelectorAll("input")].map((i) => [i.dataset.var, i.value]);
    editTemplate(res.template.id, false);
    for (const [name, value] of values) {
      const input = $(`#template-vars input[data-var="${CSS.escape(name)}"]`);
      if (input) input.value = value;
    }
    renderPreview();
    flash(`Saved template “${res.template.name}”.`);
  } catch (err) {
    showError("templates", err);
  }
}

async function deleteTemplate() {
  if (!state.template) return;
  const t = state.templates.get(state.template);
  try {
    await api("DELETE", `/templates/${t.id}`);
    state.templates.delete(t.id);
    const li = $(`#templates-list li[data-id="${CSS.escape(t.id)}"]`);
    if (li) li.remove();
    editTemplate(null, true);
    flash(`Deleted template “${t.name}”.`);
  } catch (err) {
    showError("templates", err);
  }
}

// -- conversations -----------------------------------------------------------------------------
async function loadConversations(reset) {
  showError("conversations");
  const list = $("#conversations-list");
  if (reset) {
    list.replaceChildren();
    state.cursors.conversations = null;
    $("#conversation-detail").hidden = true;
  }
  if (needsClient("conversations")) return;
  const gen = nextGeneration("conversations");
  try {
    if (reset) await fillUserFilter();
    const userId = $("#conv-user-filter").value;
    const res = await api("GET", `/conversations${q({ limit: 50, cursor: state.cursors.conversations, user_id: userId })}`);
    if (gen !== generations.conversations) return;
    for (const c of res.items) {
      const owner = state.users.get(c.user_id);
      upsert(list, h("li", { "data-id": c.id }, h("button", { type: "button", onclick: () => openConversation(c) },
        h("span", { class: "title", text: c.title || "(untitled)" }),
        h("span", { class: "hint", text: ` ${owner ? owner.email : ""} · ${c.status} · ${fmt(c.updated_at)}` }))));
    }
    if (!list.children.length) list.append(h("li", { class: "hint", text: "No conversations." }));
    state.cursors.conversations = res.next_cursor;
    $("#conversations-more").hidden = !res.next_cursor;
  } catch (err) {
    showError("conversations", err);
  }
}

async function fillUserFilter() {
  const select = $("#conv-user-filter");
  const keep = select.value;
  const res = await api("GET", `/users${q({ limit: 200 })}`);
  select.replaceChildren(h("option", { value: "", text: "All users" }));
  for (const u of res.items) {
    state.users.set(u.id, u);
    select.append(h("option", { value: u.id, text: u.email }));
  }
  select.value = keep && state.users.has(keep) ? keep : "";
}

function messageItem(m) {
  const li = h("li", { class: `msg ${m.role}`, "data-id": m.id || "", "data-seq": m.seq ?? "" },
    h("span", { class: "meta", text: `#${m.seq ?? "–"} ${m.role}${m.status && m.role === "user" ? ` (${m.status})` : ""} · ${fmt(m.timestamp)}` }),
    h("p", { text: m.content }));
  return li;
}

async function openConversation(c) {
  state.conversation = c;
  showError("conversations");
  for (const li of $("#conversations-list").children) {
    const b = li.querySelector("button");
    if (!b) continue;
    if (li.dataset.id === c.id) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  $("#conversation-detail").hidden = false;
  $("#conv-title").textContent = c.title || "(untitled)";
  const owner = state.users.get(c.user_id);
  $("#conv-meta").textContent = `User ${owner ? owner.email : c.user_id} · ${c.status} · created ${fmt(c.created_at)}`;
  $("#conv-messages").replaceChildren();
  $("#live-typing").hidden = true;
  showMode(c);
  $("#conv-title").focus();
  live.follow(c.id);
  try {
    const page = await api("GET", `/conversations/${c.id}/messages?limit=50`);
    for (const m of page.items) if (!shown(m.id)) $("#conv-messages").append(messageItem(m));
    if (!page.items.length && !$("#conv-messages").children.length) $("#conv-messages").append(h("li", { class: "hint", text: "No messages yet." }));
    state.olderCursor = page.next_cursor;
    $("#conv-older").hidden = page.next_cursor === null;
    await loadContext();
  } catch (err) {
    showError("conversations", err);
  }
}

async function loadOlder() {
  const c = state.conversation;
  if (!c || state.olderCursor === null) return;
  try {
    const page = await api("GET", `/conversations/${c.id}/messages?limit=50&before=${encodeURIComponent(state.olderCursor)}`);
    const list = $("#conv-messages");
    list.prepend(...page.items.map(messageItem));
    state.olderCursor = page.next_cursor;
    $("#conv-older").hidden = page.next_cursor === null;
  } catch (err) {
    showError("conversations", err);
  }
}

// -- live view and human handoff --------------------------------------------------------------
// An admin follows the open conversation over the WebSocket API ({"action": "subscribe"}): new
// messages and typing show as they happen. "Take over" sets the conversation's mode to human (the
// assistant stops answering); replies then go out as assistant messages (POST .../agent-messages).
function shown(id) {
  return Boolean(id) && Boolean($(`#conv-messages li[data-id="${CSS.escape(id)}"]`));
}

function appendLive(m) {
  if (!state.conversation || m.conversation_id !== state.conversation.id || shown(m.id)) return;
  const list = $("#conv-messages");
  for (const hint of list.querySelectorAll("li.hint")) hint.remove();
  list.append(messageItem(m));
}

function showMode(c) {
  const human = c.mode === "human";
  $("#mode-label").textContent = human ? "A person is answering (the assistant is paused)." : "The assistant is answering.";
  $("#mode-toggle").textContent = human ? "Hand back to the assistant" : "Take over";
  $("#agent-form").hidden = !human;
}

async function toggleMode() {
  const c = state.conversation;
  if (!c) return;
  showError("conversations");
  try {
    const res = await api("PUT", `/conversations/${c.id}`, { mode: c.mode === "human" ? "bot" : "human" });
    state.conversation = res.conversation;
    showMode(res.conversation);
    flash(res.conversation.mode === "human" ? "You are answering this conversation." : "The assistant answers again.");
  } catch (err) {
    showError("conversations", err);
  }
}

async function sendAgentReply(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const content = form.elements.content.value.trim();
  if (!content || !state.conversation) {
    form.elements.content.focus();
    return;
  }
  showError("conversations");
  try {
    const res = await api("POST", `/conversations/${state.conversation.id}/agent-messages`, {
      role: "assistant", content, client_message_id: crypto.randomUUID(),
    });
    appendLive(res.message);
    form.reset();
    form.elements.content.focus();
  } catch (err) {
    showError("conversations", err);
  }
}

const live = {
  ws: null,
  following: null,
  retry: 0,
  timer: null,
  status(text) {
    $("#live-status").textContent = text;
  },
  follow(conversationId) {
    this.following = conversationId;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.subscribe();
    else this.connect();
  },
  subscribe() {
    if (this.following) this.ws.send(JSON.stringify({ action: "subscribe", conversation_id: this.following }));
  },
  async connect() {
    if (!state.token || (this.ws && this.ws.readyState === WebSocket.CONNECTING)) return;
    clearTimeout(this.timer);
    this.status("Connecting…");
    let ticket;
    try {
      ticket = (await api("POST", "/auth/ws-ticket")).ticket;
    } catch (err) {
      this.status(`Live updates unavailable: ${describe(err)}`);
      return;
    }
    const ws = new WebSocket(`${WS}${WS.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(ticket)}`);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.subscribe();
    };
    ws.onmessage = (e) => this.onEvent(e.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!state.token) return;
      this.status("Disconnected; reconnecting…");
      this.retry = Math.min(this.retry + 1, 6);
      this.timer = setTimeout(() => this.connect(), 500 * 2 ** this.retry);
    };
  },
  onEvent(text) {
    let ev;
    try {
      ev = JSON.parse(text);
    } catch {
      return;
    }
    if (ev.type === "subscribed") this.status("Live: new messages appear as they arrive.");
    else if (ev.type === "message.created" && ev.message) appendLive(ev.message);
    else if (ev.type === "typing" && state.conversation && ev.conversation_id === state.conversation.id) $("#live-typing").hidden = ev.state !== "on";
    else if (ev.type === "conversation.updated" && ev.conversation && state.conversation && ev.conversation.id === state.conversation.id) {
      state.conversation = ev.conversation;
      showMode(ev.conversation);
    } else if (ev.type === "error" && ev.error) this.status(`Live updates: ${ev.error.message}`);
  },
  close() {
    clearTimeout(this.timer);
    this.following = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    if ($("#live-status")) this.status("Not connected.");
  },
};

async function loadContext() {
  const c = state.conversation;
  const res = await api("GET", `/conversations/${c.id}/context`);
  const ctx = res.context;
  const form = $("#context-form");
  form.elements.context_window.value = ctx.context_window;
  form.elements.parameters.value = JSON.stringify(ctx.parameters || {}, null, 2);
  const list = $("#context-messages");
  list.replaceChildren(...(ctx.messages || []).map(messageItem));
  $("#context-count").textContent = String((ctx.messages || []).length);
}

async function saveContext(event) {
  event.preventDefault();
  showError("conversations");
  const form = event.currentTarget;
  let parameters;
  try {
    parameters = JSON.parse(form.elements.parameters.value || "{}");
    if (!parameters || typeof parameters !== "object" || Array.isArray(parameters)) throw new Error("not an object");
  } catch {
    $("#conversations-error").textContent = "Parameters must be a JSON object, e.g. {\"name\": \"Ada\"}.";
    form.elements.parameters.focus();
    return;
  }
  try {
    await api("PUT", `/conversations/${state.conversation.id}/context`, {
      context_window: Number(form.elements.context_window.value), parameters,
    });
    await loadContext();
    flash("Context saved.");
  } catch (err) {
    showError("conversations", err);
  }
}

// -- clients (superadmin) ------------------------------------------------------------------------
async function loadClients(reset) {
  showError("clients");
  const list = $("#clients-list");
  if (reset) {
    list.replaceChildren();
    state.clients.clear();
    state.cursors.clients = null;
  }
  const gen = nextGeneration("clients");
  try {
    const res = await api("GET", `/clients?limit=200${state.cursors.clients ? `&cursor=${encodeURIComponent(state.cursors.clients)}` : ""}`);
    if (gen !== generations.clients) return;
    for (const c of res.items) {
      state.clients.set(c.id, c);
      upsert(list, clientItem(c));
    }
    state.cursors.clients = res.next_cursor;
    $("#clients-more").hidden = !res.next_cursor;
    fillActing();
    if (reset) editClient(state.client && state.clients.has(state.client) ? state.client : null, false);
  } catch (err) {
    showError("clients", err);
  }
}

function clientItem(c) {
  return h("li", { "data-id": c.id }, h("button", { type: "button", onclick: () => editClient(c.id, true) },
    h("span", { class: "title", text: c.name }), h("span", { class: "hint", text: ` ${c.slug}` })));
}

function fillActing() {
  const select = $("#acting-client");
  select.replaceChildren(h("option", { value: "", text: "— pick a client —" }));
  for (const c of state.clients.values()) select.append(h("option", { value: c.id, text: c.name }));
  select.value = state.acting && state.clients.has(state.acting) ? state.acting : "";
}

function editClient(id, focus) {
  const form = $("#client-form");
  const c = id ? state.clients.get(id) : null;
  state.client = c ? c.id : null;
  form.reset();
  const e = form.elements;
  e.name.value = c ? c.name : "";
  e.slug.value = c ? c.slug : "";
  e.n8n_webhook_url.value = c ? c.n8n_webhook_url || "" : "";
  e.n8n_auth_header_name.value = c ? c.n8n_auth_header_name || "" : "";
  e.n8n_auth_header_value.value = "";
  e.n8n_auth_header_value.placeholder = c && c.has_n8n_auth_header_value ? "•••• stored — type to replace" : "not set";
  $("#header-clear-wrap").hidden = !(c && c.has_n8n_auth_header_value);
  e.allow_signup.checked = c ? c.allow_signup : false;
  e.allowed_origins.value = c ? (c.allowed_origins || []).join("\n") : "";
  $("#client-secret-state").textContent = c ? (c.has_signing_secret ? "A signing secret is set (never shown again; rotate to get a new one)." : "No signing secret.") : "A signing secret is generated on create and shown once.";
  $("#client-form-h").textContent = c ? `Edit “${c.name}”` : "New client";
  $("#client-save").textContent = c ? "Save client" : "Create client";
  for (const b of ["#client-rotate", "#client-act", "#client-delete"]) $(b).hidden = !c;
  for (const li of $("#clients-list").children) {
    const b = li.querySelector("button");
    if (li.dataset.id === state.client) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
  if (focus) e.name.focus();
}

function showSecret(client) {
  if (!client.signing_secret) return;
  $("#secret-client").textContent = client.name;
  $("#secret-value").textContent = client.signing_secret;
  $("#secret-box").hidden = false;
  $("#secret-copy").focus();
}

async function saveClient(event) {
  event.preventDefault();
  showError("clients");
  const e = event.currentTarget.elements;
  const body = {
    name: e.name.value.trim(),
    slug: e.slug.value.trim(),
    n8n_webhook_url: e.n8n_webhook_url.value.trim() || null,
    n8n_auth_header_name: e.n8n_auth_header_name.value.trim() || null,
    allow_signup: e.allow_signup.checked,
    allowed_origins: e.allowed_origins.value.split(/\s+/).map((s) => s.trim()).filter(Boolean),
  };
  // write-only: sent only when typed (or explicitly cleared); reads never show it
  if (e.n8n_auth_header_value.value) body.n8n_auth_header_value = e.n8n_auth_header_value.value;
  else if (state.client && e.clear_header_value.checked) body.n8n_auth_header_value = null;
  try {
    let res;
    if (state.client) {
      res = await api("PUT", `/clients/${state.client}`, body);
    } else {
      res = await api("POST", "/clients", body);
    }
    const c = res.client;
    const fresh = !state.clients.has(c.id);
    state.clients.set(c.id, c);
    upsert($("#clients-list"), clientItem(c), { prepend: true });
    fillActing();
    editClient(c.id, false);
    flash(fresh ? `Created client “${c.name}”.` : `Saved client “${c.name}”.`);
    showSecret(c);
  } catch (err) {
    showError("clients", err);
  }
}

async function rotateSecret() {
  try {
    const res = await api("PUT", `/clients/${state.client}`, { rotate_signing_secret: true });
    state.clients.set(res.client.id, res.client);
    showSecret(res.client);
  } catch (err) {
    showError("clients", err);
  }
}

async function deleteClient() {
  const c = state.clients.get(state.client);
  try {
    await api("DELETE", `/clients/${c.id}`);
    state.clients.delete(c.id);
    if (state.acting === c.id) state.acting = null;
    persist();
    await loadClients(true);
    editClient(null, true);
    flash(`Deleted client “${c.name}”.`);
  } catch (err) {
    showError("clients", err);
  }
}

function actIn(id) {
  state.acting = id || null;
  persist();
  $("#acting-client").value = state.acting || "";
  state.users.clear();
}

// -- wiring ------------------------------------------------------------------------------------
function wire() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#acting-client").addEventListener("change", (e) => {
    actIn(e.target.value);
    if (state.tab !== "clients") showTab(state.tab);
  });
  $("#user-form").addEventListener("submit", createUser);
  $("#users-more").addEventListener("click", () => loadUsers(false));
  $("#template-form").addEventListener("submit", saveTemplate);
  $("#template-form").elements.content.addEventListener("input", renderPreview);
  $("#template-new").addEventListener("click", () => editTemplate(null, true));
  $("#templates-more").addEventListener("click", () => loadTemplates(false));
  confirmButton($("#template-delete"), "Delete", deleteTemplate);
  $("#conv-user-filter").addEventListener("change", async () => {
    $("#conversations-list").replaceChildren();
    state.cursors.conversations = null;
    $("#conversation-detail").hidden = true;
    const res = $("#conv-user-filter").value;
    await loadConversations(false);
    $("#conv-user-filter").value = res;
  });
  $("#conversations-more").addEventListener("click", () => loadConversations(false));
  $("#conv-older").addEventListener("click", loadOlder);
  $("#context-form").addEventListener("submit", saveContext);
  $("#mode-toggle").addEventListener("click", toggleMode);
  $("#agent-form").addEventListener("submit", sendAgentReply);
  $("#client-form").addEventListener("submit", saveClient);
  $("#client-new").addEventListener("click", () => editClient(null, true));
  $("#clients-more").addEventListener("click", () => loadClients(false));
  $("#client-rotate").addEventListener("click", rotateSecret);
  $("#client-act").addEventListener("click", () => {
    actIn(state.client);
    showTab("users");
  });
  confirmButton($("#client-delete"), "Delete", deleteClient);
  $("#secret-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("#secret-value").textContent);
      flash("Copied.");
    } catch {
      flash("Copy failed: select the text and copy it by hand.");
    }
  });
  $("#secret-dismiss").addEventListener("click", () => {
    $("#secret-box").hidden = true;
    $("#secret-value").textContent = "";
    $("#client-form").elements.name.focus();
  });
}

async function init() {
  wire();
  $("#signin-client").value = new URLSearchParams(location.search).get("client") || localStorage.getItem("bitworks:console-client") || "";
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "null");
    if (saved && saved.token) Object.assign(state, { token: saved.token, user: saved.user, acting: saved.acting });
  } catch {
    /* start signed out */
  }
  if (!state.token) {
    signOut();
    return;
  }
  try {
    const res = await api("GET", "/auth/verify");
    state.user = res.user;
    await enterApp();
  } catch (err) {
    if (state.token) signOut(describe(err));
  }
}

init();
