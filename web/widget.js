// Bitworks Message — embeddable chat widget (plain ES module, no build step, no framework).
//
//   <script type="module" src="https://HOST/web/widget.js"
//           data-api="https://api.example" data-ws="wss://ws.example/prod" data-client="CLIENT_ID"></script>
//
// data-api defaults to the page's origin, data-ws to ws(s)://<page host>:3001 (the local stack).
// Everything the server sends is rendered with textContent: never as HTML.
// Contracts: ARCHITECTURE.md (HTTP routes, {"error": {code, message}}, WebSocket events).

const PING_INTERVAL_MS = 5 * 60 * 1000; // API Gateway drops sockets idle for 10 minutes
const ACK_TIMEOUT_MS = 8000; // no message.created ack over the socket → resend over HTTP (idempotent)
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30000;
const TYPING_TIMEOUT_MS = 150000; // a lost "typing off" never leaves the indicator on for ever
const PAGE_SIZE = 30;

// -- configuration ---------------------------------------------------------------------------
function ownScript() {
  const scripts = Array.from(document.querySelectorAll("script[src]"));
  return (
    scripts.find((s) => {
      try {
        return new URL(s.src, location.href).href === import.meta.url;
      } catch {
        return false;
      }
    }) || scripts.find((s) => /widget\.js(\?|#|$)/.test(s.src)) || null
  );
}

function readConfig() {
  const el = ownScript();
  const data = (el && el.dataset) || {};
  const wsDefault = `${location.protocol === "https:" ? "wss" : "ws"}://${location.hostname}:3001`;
  // Deliberately no query-string overrides here: a link must not redirect an embedding site's chat.
  return {
    api: (data.api || location.origin).replace(/\/+$/, ""),
    ws: (data.ws || wsDefault).replace(/\/+$/, ""),
    client: data.client || "",
    title: data.title || "Chat with us",
  };
}

// -- small helpers ---------------------------------------------------------------------------
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

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

function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The documented error shape {"error": {code, message}}; API Gateway's own {"message"}; else generic. */
function errorFrom(status, body, retryAfter) {
  if (body && body.error && typeof body.error === "object") {
    return new ApiError(status, body.error.code || "error", body.error.message || `Request failed (${status})`, retryAfter);
  }
  if (body && typeof body.message === "string") return new ApiError(status, "gateway", body.message, retryAfter);
  return new ApiError(status, "http_error", `Request failed (${status})`, retryAfter);
}

function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 429 && err.retryAfter) return `${err.message} (try again in ${err.retryAfter} s)`;
    return err.message;
  }
  return "Network error: the service could not be reached.";
}

// -- styles (inside the shadow root: the host page's CSS cannot leak in, ours cannot leak out) --
const CSS = `
:host { all: initial; }
* { box-sizing: border-box; }
.root { font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1c1e21; }
button, input, textarea { font: inherit; }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.sr { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
.launcher { position: fixed; right: 16px; bottom: 16px; z-index: 2147483000; border: 0; border-radius: 999px;
  background: #1d4ed8; color: #fff; padding: 12px 18px; font-weight: 600; cursor: pointer; box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.launcher:hover { background: #1e40af; }
.panel { position: fixed; right: 16px; bottom: 72px; z-index: 2147483001; width: 380px; max-width: calc(100vw - 16px);
  height: min(600px, calc(100vh - 96px)); display: flex; flex-direction: column; background: #fff; border-radius: 12px;
  box-shadow: 0 10px 40px rgba(0,0,0,.3); overflow: hidden; }
.panel[hidden] { display: none; }
@media (max-width: 480px) {
  .panel { right: 0; left: 0; bottom: 0; width: 100vw; max-width: 100vw; height: calc(100vh - 64px); border-radius: 12px 12px 0 0; }
  .launcher { right: 8px; bottom: 8px; }
}
header { display: flex; align-items: center; gap: 8px; padding: 10px 12px; background: #1d4ed8; color: #fff; }
header h2 { flex: 1; margin: 0; font-size: 16px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
header button { background: transparent; color: #fff; border: 1px solid rgba(255,255,255,.5); border-radius: 6px; padding: 4px 8px; cursor: pointer; }
header button[hidden] { display: none; }
.status { font-size: 12px; display: inline-flex; align-items: center; gap: 4px; }
.dot { width: 8px; height: 8px; border-radius: 50%; background: #9ca3af; display: inline-block; }
.status[data-state="online"] .dot { background: #22c55e; }
.status[data-state="connecting"] .dot { background: #f59e0b; }
.status[data-state="offline"] .dot { background: #ef4444; }
.view { flex: 1; display: flex; flex-direction: column; min-height: 0; }
.view[hidden] { display: none; }
.pad { padding: 12px; overflow: auto; }
form.auth { display: flex; flex-direction: column; gap: 10px; }
label { display: flex; flex-direction: column; gap: 4px; font-size: 13px; font-weight: 600; }
input, textarea { border: 1px solid #9ca3af; border-radius: 6px; padding: 8px; color: inherit; background: #fff; font-weight: 400; }
.primary { background: #1d4ed8; color: #fff; border: 0; border-radius: 6px; padding: 9px 14px; cursor: pointer; font-weight: 600; }
.primary:disabled { opacity: .6; cursor: default; }
.link { background: none; border: 0; color: #1d4ed8; text-decoration: underline; cursor: pointer; padding: 4px 0; text-align: left; }
.error { color: #b91c1c; background: #fef2f2; border: 1px solid #fecaca; border-radius: 6px; padding: 8px; font-size: 13px; }
.error:empty { display: none; }
.notice { color: #1e3a8a; background: #eff6ff; border-radius: 6px; padding: 6px 8px; font-size: 13px; margin: 6px 12px 0; }
.notice:empty { display: none; }
ul.convs { list-style: none; margin: 8px 0 0; padding: 0; display: flex; flex-direction: column; gap: 6px; }
ul.convs button { width: 100%; text-align: left; border: 1px solid #d1d5db; border-radius: 8px; background: #f9fafb; padding: 8px 10px; cursor: pointer; }
ul.convs button:hover { background: #eef2ff; }
.conv-title { display: block; font-weight: 600; }
.conv-meta { display: block; font-size: 12px; color: #4b5563; }
.toolbar { display: flex; gap: 8px; justify-content: space-between; align-items: center; flex-wrap: wrap; }
.log { flex: 1; overflow-y: auto; padding: 10px 12px; display: flex; flex-direction: column; gap: 8px; background: #f3f4f6; }
.older { align-self: center; }
.msg { max-width: 85%; padding: 8px 10px; border-radius: 10px; background: #fff; border: 1px solid #e5e7eb; }
.msg.user { align-self: flex-end; background: #dbeafe; border-color: #bfdbfe; }
.msg.assistant, .msg.system { align-self: flex-start; }
.msg.system { background: #fef9c3; }
.msg p { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.msg .meta { display: flex; gap: 8px; align-items: center; justify-content: flex-end; font-size: 11px; color: #4b5563; margin-top: 4px; flex-wrap: wrap; }
.msg.failed { border-color: #fca5a5; }
.msg .err { color: #b91c1c; font-size: 12px; margin-top: 4px; }
.msg .retry { border: 1px solid #b91c1c; color: #b91c1c; background: #fff; border-radius: 6px; padding: 2px 8px; cursor: pointer; font-size: 12px; }
.typing { padding: 4px 12px; font-size: 13px; color: #374151; font-style: italic; background: #f3f4f6; }
.typing[hidden] { display: none; }
.typing .dots::after { content: "…"; animation: blink 1s steps(2) infinite; }
@keyframes blink { 50% { opacity: .2; } }
@media (prefers-reduced-motion: reduce) { .typing .dots::after { animation: none; } }
form.composer { display: flex; gap: 8px; padding: 8px; border-top: 1px solid #e5e7eb; align-items: flex-end; }
form.composer textarea { flex: 1; resize: none; min-height: 40px; max-height: 120px; }
.empty { color: #4b5563; font-size: 13px; text-align: center; margin: auto; }
`;

// -- the widget --------------------------------------------------------------------------------
class ChatWidget {
  constructor(config) {
    this.cfg = config;
    this.storeKey = `bitworks:${config.api}:${config.client || "-"}`;
    this.token = null;
    this.user = null;
    this.conversations = new Map(); // id -> conversation
    this.current = null; // open conversation id
    this.messages = new Map(); // id -> message (current conversation)
    this.pending = new Map(); // client_message_id -> local message not yet acknowledged
    this.nodes = new Map(); // message id or "local:<cmid>" -> element
    this.lastSeq = new Map(); // conversation id -> highest seq seen
    this.olderCursor = null;
    this.loadingOlder = false;
    this.ws = null;
    this.wsState = "offline";
    this.attempt = 0;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.typingTimer = null;
    this.reconnectPaused = false;
    this.closing = false;
    this.signupMode = false;
    this.restore();
    this.build();
  }

  // -- session ---------------------------------------------------------------------------------
  restore() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.storeKey) || "null");
      if (saved && saved.token) {
        this.token = saved.token;
        this.user = saved.user;
      }
    } catch {
      /* storage unavailable or corrupt: start signed out */
    }
  }

  persist() {
    try {
      if (this.token) sessionStorage.setItem(this.storeKey, JSON.stringify({ token: this.token, user: this.user }));
      else sessionStorage.removeItem(this.storeKey);
    } catch {
      /* private mode without storage: the session lasts as long as the page */
    }
  }

  async api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let res;
    try {
      res = await fetch(this.cfg.api + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new TypeError(String(e));
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!res.ok) {
      const err = errorFrom(res.status, data, res.headers.get("Retry-After"));
      if (res.status === 401 && this.token && !path.startsWith("/auth/login")) this.signOut("Your session has ended. Please sign in again.");
      throw err;
    }
    return data;
  }

  // -- DOM -------------------------------------------------------------------------------------
  build() {
    this.host = h("div", { id: "bitworks-chat-widget" });
    const shadow = this.host.attachShadow({ mode: "open" });
    shadow.append(h("style", { text: CSS }));
    const root = h("div", { class: "root" });
    shadow.append(root);
    this.shadow = shadow;

    this.launcher = h("button", {
      class: "launcher", type: "button", "aria-haspopup": "dialog", "aria-expanded": "false", "aria-controls": "bw-panel",
      text: this.cfg.title, onclick: () => this.toggle(),
    });
    this.statusEl = h("span", { class: "status", "data-state": "offline", role: "status" }, h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "status-text", text: "Offline" }));
    this.backBtn = h("button", { type: "button", class: "back", hidden: true, text: "← Chats", "aria-label": "Back to conversations", onclick: () => this.showList() });
    this.titleEl = h("h2", { id: "bw-title", tabindex: "-1", text: this.cfg.title });
    this.signOutBtn = h("button", { type: "button", class: "signout", hidden: true, text: "Sign out", onclick: () => this.signOut() });
    const closeBtn = h("button", { type: "button", class: "close", "aria-label": "Close chat", text: "✕", onclick: () => this.close() });
    this.announcer = h("div", { class: "sr", "aria-live": "polite", "aria-atomic": "true" });

    // sign in / sign up
    this.authError = h("div", { class: "error", role: "alert" });
    this.authHeading = h("h3", { text: "Sign in to chat", style: "margin:0;font-size:15px" });
    this.emailInput = h("input", { id: "bw-email", type: "email", name: "email", autocomplete: "email", required: true });
    this.passwordInput = h("input", { id: "bw-password", type: "password", name: "password", autocomplete: "current-password", required: true, minlength: "1" });
    this.clientInput = h("input", { id: "bw-client", type: "text", name: "client_id", autocomplete: "off", required: true, spellcheck: "false" });
    const clientLabel = this.cfg.client ? null : h("label", {}, "Client ID", this.clientInput);
    this.authSubmit = h("button", { class: "primary", type: "submit", text: "Sign in" });
    this.authToggle = h("button", { class: "link", type: "button", text: "No account yet? Create one", onclick: () => this.setSignupMode(!this.signupMode) });
    this.authForm = h("form", { class: "auth", "aria-labelledby": "bw-auth-heading", novalidate: true, onsubmit: (e) => { e.preventDefault(); this.submitAuth(); } },
      this.authHeading, this.authError,
      h("label", {}, "Email", this.emailInput),
      h("label", {}, "Password", this.passwordInput),
      clientLabel, this.authSubmit, this.authToggle);
    this.authHeading.id = "bw-auth-heading";
    this.authView = h("section", { class: "view pad", "aria-label": "Sign in" }, this.authForm);

    // conversation list
    this.listError = h("div", { class: "error", role: "alert" });
    this.convList = h("ul", { class: "convs", "aria-label": "Your conversations" });
    this.newConvBtn = h("button", { class: "primary new-conv", type: "button", text: "New conversation", onclick: () => this.newConversation() });
    this.listView = h("section", { class: "view pad", "aria-label": "Conversations", hidden: true },
      h("div", { class: "toolbar" }, h("span", { class: "who" }), this.newConvBtn), this.listError, this.convList);

    // chat
    this.olderBtn = h("button", { class: "link older", type: "button", hidden: true, text: "Load older messages", onclick: () => this.loadOlder() });
    this.log = h("div", { class: "log", role: "log", "aria-label": "Messages", "aria-live": "off", tabindex: "0" }, this.olderBtn);
    this.log.addEventListener("scroll", () => {
      if (this.log.scrollTop < 40 && this.olderCursor !== null && !this.loadingOlder) this.loadOlder();
    });
    this.typingEl = h("div", { class: "typing", hidden: true, "aria-live": "polite" }, "Assistant is typing", h("span", { class: "dots", "aria-hidden": "true" }));
    this.chatError = h("div", { class: "error", role: "alert", style: "margin:6px 12px 0" });
    this.notice = h("div", { class: "notice", role: "status" });
    this.input = h("textarea", { id: "bw-input", rows: "2", maxlength: "16000", placeholder: "Write a message…", "aria-describedby": "bw-hint" });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.sendFromComposer();
      }
    });
    this.sendBtn = h("button", { class: "primary send", type: "submit", text: "Send" });
    this.composer = h("form", { class: "composer", onsubmit: (e) => { e.preventDefault(); this.sendFromComposer(); } },
      h("label", { for: "bw-input", class: "sr", text: "Message" }), this.input,
      h("span", { id: "bw-hint", class: "sr", text: "Enter sends, Shift+Enter adds a line." }), this.sendBtn);
    this.chatView = h("section", { class: "view", "aria-label": "Conversation", hidden: true },
      this.notice, this.chatError, this.log, this.typingEl, this.composer);

    this.panel = h("div", { class: "panel", id: "bw-panel", role: "dialog", "aria-labelledby": "bw-title", hidden: true },
      h("header", {}, this.backBtn, this.titleEl, this.statusEl, this.signOutBtn, closeBtn),
      this.announcer, this.authView, this.listView, this.chatView);
    this.panel.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        this.close();
      }
    });
    root.append(this.launcher, this.panel);
    document.body.append(this.host);

    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  $(sel) {
    return this.shadow.querySelector(sel);
  }

  // -- open / close ------------------------------------------------------------------------------
  toggle() {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  async open() {
    this.panel.hidden = false;
    this.launcher.setAttribute("aria-expanded", "true");
    if (!this.token) {
      this.showAuth();
      return;
    }
    this.connect();
    if (this.current) this.showChat(this.current);
    else await this.showList();
  }

  close() {
    this.panel.hidden = true;
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcher.focus();
  }

  // -- auth view -------------------------------------------------------------------------------
  setSignupMode(on) {
    this.signupMode = on;
    this.authHeading.textContent = on ? "Create an account" : "Sign in to chat";
    this.authSubmit.textContent = on ? "Create account" : "Sign in";
    this.authToggle.textContent = on ? "Already have an account? Sign in" : "No account yet? Create one";
    this.passwordInput.setAttribute("autocomplete", on ? "new-password" : "current-password");
    this.authError.textContent = "";
  }

  showAuth(message = "") {
    this.setView("auth");
    this.titleEl.textContent = this.cfg.title;
    this.authError.textContent = message;
    if (!this.cfg.client) this.clientInput.value = this.clientInput.value || localStorage.getItem("bitworks:client") || "";
    this.emailInput.focus();
  }

  async submitAuth() {
    const email = this.emailInput.value.trim();
    const password = this.passwordInput.value;
    const clientId = this.cfg.client || this.clientInput.value.trim();
    if (!email || !password || !clientId) {
      this.authError.textContent = !clientId ? "A client ID is needed (data-client or ?client=)." : "Email and password are required.";
      (!email ? this.emailInput : !password ? this.passwordInput : this.clientInput).focus();
      return;
    }
    this.authSubmit.disabled = true;
    this.authError.textContent = "";
    try {
      if (this.signupMode) await this.api("POST", "/auth/register", { email, password, client_id: clientId });
      const res = await this.api("POST", "/auth/login", { email, password, client_id: clientId });
      this.token = res.access_token;
      this.user = res.user;
      if (!this.cfg.client) {
        this.cfg.client = clientId;
        try { localStorage.setItem("bitworks:client", clientId); } catch { /* optional */ }
      }
      this.persist();
      this.passwordInput.value = "";
      this.setSignupMode(false);
      this.connect();
      await this.showList();
    } catch (err) {
      this.authError.textContent = describe(err);
      this.passwordInput.focus();
    } finally {
      this.authSubmit.disabled = false;
    }
  }

  signOut(message = "") {
    this.token = null;
    this.user = null;
    this.persist();
    this.current = null;
    this.resetConversation();
    this.conversations.clear();
    this.disconnect();
    if (!this.panel.hidden) this.showAuth(message);
    else this.setView("auth");
  }

  setView(name) {
    this.authView.hidden = name !== "auth";
    this.listView.hidden = name !== "list";
    this.chatView.hidden = name !== "chat";
    this.backBtn.hidden = name !== "chat";
    this.signOutBtn.hidden = name !== "list";
    this.statusEl.hidden = name === "auth";
    this.view = name;
  }

  // -- conversation list -------------------------------------------------------------------------
  async showList() {
    this.setView("list");
    this.current = null;
    this.titleEl.textContent = this.cfg.title;
    this.listView.querySelector(".who").textContent = this.user ? this.user.email : "";
    this.listError.textContent = "";
    this.newConvBtn.focus();
    try {
      const res = await this.api("GET", "/conversations?limit=50");
      this.conversations.clear();
      for (const c of res.items) this.conversations.set(c.id, c);
      this.renderList();
    } catch (err) {
      if (this.token) this.listError.textContent = describe(err);
    }
  }

  convLabel(c) {
    return c.title || `Conversation from ${formatTime(c.created_at)}`;
  }

  renderList() {
    this.convList.replaceChildren();
    const items = [...this.conversations.values()].sort((a, b) => String(b.updated_at).localeCompare(String(a.updated_at)));
    if (!items.length) {
      this.convList.append(h("li", { class: "empty", text: "No conversations yet. Start one!" }));
      return;
    }
    for (const c of items) {
      this.convList.append(h("li", {}, h("button", { type: "button", class: "conv", "data-id": c.id, onclick: () => this.showChat(c.id) },
        h("span", { class: "conv-title", text: this.convLabel(c) }),
        h("span", { class: "conv-meta", text: `${c.status === "closed" ? "Closed · " : ""}updated ${formatTime(c.updated_at)}` }))));
    }
  }

  async newConversation() {
    this.newConvBtn.disabled = true;
    this.listError.textContent = "";
    try {
      const res = await this.api("POST", "/conversations", {});
      this.conversations.set(res.conversation.id, res.conversation);
      await this.showChat(res.conversation.id);
    } catch (err) {
      this.listError.textContent = describe(err);
    } finally {
      this.newConvBtn.disabled = false;
    }
  }

  // -- chat view -------------------------------------------------------------------------------
  resetConversation() {
    this.messages.clear();
    this.pending.clear();
    for (const node of this.nodes.values()) node.remove();
    this.nodes.clear();
    this.olderCursor = null;
    this.olderBtn.hidden = true;
    this.setTyping(false);
  }

  async showChat(id) {
    const switching = this.current !== id;
    this.setView("chat");
    this.current = id;
    this.log.dataset.conversation = id;
    const conv = this.conversations.get(id);
    this.titleEl.textContent = conv ? this.convLabel(conv) : "Conversation";
    this.chatError.textContent = "";
    if (switching) {
      this.resetConversation();
      this.lastSeq.delete(id);
    }
    this.input.focus();
    try {
      if (switching || !this.messages.size) {
        const page = await this.api("GET", `/conversations/${encodeURIComponent(id)}/messages?limit=${PAGE_SIZE}`);
        if (this.current !== id) return;
        this.merge(page.items, { announce: false });
        this.olderCursor = page.next_cursor;
        this.olderBtn.hidden = page.next_cursor === null;
        this.scrollToBottom();
      } else {
        await this.catchUp();
      }
    } catch (err) {
      this.chatError.textContent = describe(err);
    }
  }

  async loadOlder() {
    if (this.olderCursor === null || this.loadingOlder || !this.current) return;
    this.loadingOlder = true;
    const id = this.current;
    const before = this.log.scrollHeight - this.log.scrollTop;
    try {
      const page = await this.api("GET", `/conversations/${encodeURIComponent(id)}/messages?limit=${PAGE_SIZE}&before=${encodeURIComponent(this.olderCursor)}`);
      if (this.current !== id) return;
      this.merge(page.items, { announce: false });
      this.olderCursor = page.next_cursor;
      this.olderBtn.hidden = page.next_cursor === null;
      this.log.scrollTop = this.log.scrollHeight - before; // keep what the reader was looking at in place
    } catch (err) {
      this.chatError.textContent = describe(err);
    } finally {
      this.loadingOlder = false;
    }
  }

  /** After a reconnect: everything newer than the last seq seen, page by page. */
  async catchUp() {
    const id = this.current;
    if (!id || this.view !== "chat") return;
    let after = this.lastSeq.get(id);
    if (after === undefined) return this.showChat(id);
    for (let i = 0; i < 50; i += 1) {
      const page = await this.api("GET", `/conversations/${encodeURIComponent(id)}/messages?limit=200&after=${after}`);
      if (this.current !== id) return;
      this.merge(page.items, { announce: true });
      if (page.next_cursor === null || page.next_cursor === undefined || !page.items.length) break;
      after = page.next_cursor;
    }
    this.refreshTypingFromState();
  }

  nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  /** Add or update messages of the open conversation: deduped by id, placed by seq. */
  merge(items, { announce }) {
    const stick = this.nearBottom();
    for (const m of items) {
      if (!m || m.conversation_id !== this.current) continue;
      const known = this.messages.get(m.id);
      if (m.client_message_id && this.pending.has(m.client_message_id)) {
        const local = this.pending.get(m.client_message_id);
        clearTimeout(local.ackTimer);
        this.pending.delete(m.client_message_id);
        const node = this.nodes.get(`local:${m.client_message_id}`);
        if (node) node.remove();
        this.nodes.delete(`local:${m.client_message_id}`);
      }
      const merged = known ? { ...known, ...m, error: m.status === "failed" ? known.error : null } : m;
      this.messages.set(m.id, merged);
      const prev = this.lastSeq.get(this.current) || 0;
      if (m.seq > prev) this.lastSeq.set(this.current, m.seq);
      this.renderMessage(merged);
      if (announce && !known && m.role !== "user") this.announce(`${m.role === "assistant" ? "Assistant" : "System"}: ${m.content}`);
      if (m.role === "assistant" && m.in_reply_to) {
        const q = this.messages.get(m.in_reply_to);
        if (q && q.status !== "replied") {
          q.status = "replied";
          this.renderMessage(q);
        }
      }
    }
    if (stick) this.scrollToBottom();
  }

  announce(text) {
    this.announcer.textContent = "";
    // a fresh text node after clearing makes screen readers announce repeated texts too
    requestAnimationFrame(() => { this.announcer.textContent = text.slice(0, 500); });
  }

  statusText(m) {
    if (m.local) return m.sendError ? "not sent" : "sending…";
    if (m.role !== "user") return "";
    return { pending: "delivered", replied: "", failed: "failed" }[m.status] ?? m.status;
  }

  renderMessage(m) {
    const key = m.local ? `local:${m.client_message_id}` : m.id;
    let node = this.nodes.get(key);
    const failed = (!m.local && m.status === "failed") || (m.local && m.sendError);
    const who = m.role === "user" ? "You" : m.role === "assistant" ? "Assistant" : "System";
    const body = h("p", { class: "content" });
    body.textContent = m.content; // text, never HTML
    const meta = h("div", { class: "meta" }, h("time", { datetime: m.timestamp || "", text: formatTime(m.timestamp) }));
    const st = this.statusText(m);
    if (st) meta.append(h("span", { class: "state", text: st }));
    const children = [h("span", { class: "sr", text: `${who}: ` }), body, meta];
    if (failed) {
      const reason = m.local ? m.sendError : m.error || "The reply could not be produced.";
      children.push(h("div", { class: "err", text: reason }));
      meta.append(h("button", {
        type: "button", class: "retry", text: "Retry", "aria-label": `Retry: ${m.content.slice(0, 40)}`,
        onclick: (e) => { e.currentTarget.disabled = true; m.local ? this.resend(m) : this.retry(m); },
      }));
    }
    const fresh = h("div", {
      class: `msg ${m.role}${failed ? " failed" : ""}`, "data-id": m.id || "", "data-seq": m.seq ?? "",
      "data-status": m.local ? "sending" : m.status, "data-cmid": m.client_message_id || "",
    }, ...children);
    if (node) {
      const hadFocus = node.contains(this.shadow.activeElement);
      node.replaceWith(fresh);
      if (hadFocus) (fresh.querySelector("button") || this.input).focus();
    } else if (m.local) {
      this.log.append(fresh);
    } else {
      // before the first message with a higher seq, or before the first local (unacked) one
      let anchor = null;
      for (const el of this.log.querySelectorAll(".msg")) {
        const seq = el.dataset.seq === "" ? Infinity : Number(el.dataset.seq);
        if (seq > m.seq) { anchor = el; break; }
      }
      if (anchor) this.log.insertBefore(fresh, anchor);
      else this.log.append(fresh);
    }
    this.nodes.set(key, fresh);
  }

  setTyping(on) {
    clearTimeout(this.typingTimer);
    this.typingEl.hidden = !on;
    if (on) {
      if (this.nearBottom()) requestAnimationFrame(() => this.scrollToBottom());
      this.typingTimer = setTimeout(() => this.setTyping(false), TYPING_TIMEOUT_MS);
    }
  }

  /** After a catch-up the typing state is unknown: on while our last user message waits. */
  refreshTypingFromState() {
    const list = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    const last = list[list.length - 1];
    if (!last || last.role !== "user" || last.status !== "pending") this.setTyping(false);
  }

  // -- sending ---------------------------------------------------------------------------------
  sendFromComposer() {
    const content = this.input.value;
    if (!content.trim()) {
      this.chatError.textContent = "Type a message first.";
      this.input.focus();
      return;
    }
    if (content.length > 16000) {
      this.chatError.textContent = "A message can be at most 16,000 characters.";
      return;
    }
    this.chatError.textContent = "";
    this.input.value = "";
    const local = { local: true, role: "user", content, client_message_id: uuid(), conversation_id: this.current, timestamp: new Date().toISOString() };
    this.pending.set(local.client_message_id, local);
    this.renderMessage(local);
    this.scrollToBottom();
    this.deliver(local);
    this.input.focus();
  }

  deliver(local) {
    local.sendError = null;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ action: "sendMessage", conversation_id: local.conversation_id, content: local.content, client_message_id: local.client_message_id }));
      // No ack in time (socket silently dead?): the same client_message_id over HTTP is idempotent.
      local.ackTimer = setTimeout(() => {
        if (this.pending.get(local.client_message_id) === local) this.postOverHttp(local);
      }, ACK_TIMEOUT_MS);
    } else {
      this.postOverHttp(local);
    }
  }

  async postOverHttp(local) {
    try {
      const res = await this.api("POST", `/conversations/${encodeURIComponent(local.conversation_id)}/messages`, {
        content: local.content, client_message_id: local.client_message_id,
      });
      if (local.conversation_id === this.current) this.merge([res.message], { announce: false });
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) this.setNotice("Offline: your message was sent; the reply will show when the connection is back.");
    } catch (err) {
      this.failLocal(local.client_message_id, describe(err));
    }
  }

  failLocal(cmid, message) {
    const local = this.pending.get(cmid);
    if (!local) return;
    clearTimeout(local.ackTimer);
    local.sendError = message;
    if (local.conversation_id === this.current) this.renderMessage(local);
  }

  resend(local) {
    local.sendError = null;
    this.renderMessage(local);
    this.deliver(local);
  }

  async retry(m) {
    this.chatError.textContent = "";
    try {
      const res = await this.api("POST", `/messages/${encodeURIComponent(m.id)}/retry`);
      const updated = (res && res.message) || { ...m, status: "pending" };
      this.merge([{ ...updated, error: null }], { announce: false });
    } catch (err) {
      this.chatError.textContent = describe(err);
      this.renderMessage(m);
    }
  }

  setNotice(text) {
    this.notice.textContent = text;
  }

  // -- WebSocket -------------------------------------------------------------------------------
  setState(state) {
    this.wsState = state;
    this.statusEl.dataset.state = state;
    this.statusEl.querySelector(".status-text").textContent = { online: "Online", connecting: "Connecting…", offline: "Offline" }[state];
    this.host.dataset.state = state;
  }

  async connect() {
    if (!this.token || this.ws || this.connecting || this.reconnectPaused) return;
    this.connecting = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.setState("connecting");
    let ticket;
    try {
      ticket = (await this.api("POST", "/auth/ws-ticket")).ticket;
    } catch (err) {
      this.connecting = false;
      if (err instanceof ApiError && err.status === 401) return; // signed out already
      this.scheduleReconnect();
      return;
    }
    if (!this.token || this.reconnectPaused) {
      this.connecting = false;
      this.setState("offline");
      return;
    }
    const sep = this.cfg.ws.includes("?") ? "&" : "?";
    let ws;
    try {
      ws = new WebSocket(`${this.cfg.ws}${sep}ticket=${encodeURIComponent(ticket)}`);
    } catch (err) {
      this.connecting = false;
      this.setNotice(`Live updates unavailable: ${err.message}`);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.connecting = false;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.setState("online");
      this.setNotice("");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.ping(), PING_INTERVAL_MS);
      // whatever arrived while we were away (or while this socket was opening)
      if (this.view === "chat" && this.lastSeq.has(this.current)) {
        this.catchUp().catch((err) => { this.chatError.textContent = describe(err); });
      }
    });
    ws.addEventListener("message", (ev) => this.onEvent(ev.data));
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      this.setState("offline");
      this.setTyping(false);
      // unacknowledged sends go over HTTP now (same client_message_id: no duplicates)
      for (const local of this.pending.values()) {
        if (!local.sendError) {
          clearTimeout(local.ackTimer);
          this.postOverHttp(local);
        }
      }
      if (this.token && !this.closing) this.scheduleReconnect();
    });
  }

  ping() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ action: "ping" }));
  }

  scheduleReconnect() {
    if (this.reconnectTimer || this.reconnectPaused || !this.token) {
      this.setState(this.ws ? this.wsState : "offline");
      return;
    }
    // exponential backoff with full jitter: 0.5 s, 1 s, 2 s … capped at 30 s, times a random 0.5..1
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
    this.attempt += 1;
    this.setState("offline");
    this.setNotice(`Connection lost. Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  reconnectNow() {
    if (!this.token || this.ws || this.connecting || this.reconnectPaused) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.connect();
  }

  disconnect() {
    this.closing = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
    this.closing = false;
    this.attempt = 0;
    this.setState("offline");
  }

  onEvent(raw) {
    let ev;
    try {
      ev = JSON.parse(raw);
    } catch {
      return;
    }
    switch (ev.type) {
      case "message.created": {
        const m = ev.message;
        if (!m) return;
        if (m.conversation_id === this.current) {
          this.merge([m], { announce: true });
        }
        this.touchConversation(m.conversation_id, m.timestamp);
        break;
      }
      case "typing":
        if (ev.conversation_id === this.current) this.setTyping(ev.state === "on");
        break;
      case "message.failed": {
        if (ev.conversation_id === this.current) {
          this.setTyping(false);
          const m = this.messages.get(ev.message_id);
          const reason = (ev.error && ev.error.message) || "The reply could not be produced.";
          if (m) {
            m.status = "failed";
            m.error = reason;
            this.renderMessage(m);
          }
          this.announce(`Reply failed: ${reason}`);
        }
        break;
      }
      case "conversation.updated": {
        const c = ev.conversation;
        if (!c) return;
        this.conversations.set(c.id, { ...(this.conversations.get(c.id) || {}), ...c });
        if (c.id === this.current) this.titleEl.textContent = this.convLabel(c);
        if (this.view === "list") this.renderList();
        break;
      }
      case "error": {
        const msg = (ev.error && ev.error.message) || "The server rejected the request.";
        if (ev.client_message_id && this.pending.has(ev.client_message_id)) this.failLocal(ev.client_message_id, msg);
        else if (ev.action !== "ping") this.chatError.textContent = msg;
        break;
      }
      default:
        break; // pong and future events
    }
  }

  touchConversation(id, ts) {
    const c = this.conversations.get(id);
    if (c && ts) c.updated_at = ts;
    if (this.view === "list") this.renderList();
  }
}

// -- boot ----------------------------------------------------------------------------------------
function boot() {
  if (window.__bitworksWidget) return window.__bitworksWidget;
  const widget = new ChatWidget(readConfig());
  window.__bitworksWidget = widget;
  // Small debugging/test surface: simulate a dropped connection, hold reconnects.
  window.__bitworks = {
    dropSocket() {
      if (widget.ws) widget.ws.close(4000, "dropped by __bitworks.dropSocket()");
    },
    pauseReconnect(paused = true) {
      widget.reconnectPaused = paused;
      if (paused) {
        clearTimeout(widget.reconnectTimer);
        widget.reconnectTimer = null;
      } else {
        widget.reconnectNow();
      }
    },
    get state() {
      return widget.wsState;
    },
  };
  return widget;
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot, { once: true });
else boot();

export { boot, ChatWidget };
