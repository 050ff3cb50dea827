// musher web console: chat over the daemon's JSON API + Server-Sent Events.
// Plain ES module, no dependencies. Message text is only ever assigned via
// textContent, never innerHTML, so whatever the bot or a user says is inert.

import { createBoard } from "./board.js";
import { el } from "./dom.js";

const ROOM_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const KEY_SENDER = "musher.sender";
const KEY_TOKEN = "musher.token";

const $ = (id) => document.getElementById(id);
const ui = {
  roomForm: $("room-form"), room: $("room"), sender: $("sender"),
  status: $("status"), list: $("messages"), typing: $("typing"),
  composer: $("composer"), text: $("text"), send: $("send"), error: $("error"),
  tokenForm: $("token-form"), token: $("token"),
};

const state = {
  room: "lobby",
  token: localStorage.getItem(KEY_TOKEN) || "",
  seen: new Set(),   // seqs already rendered (dedupe history vs. SSE)
  lastSeq: 0,
  source: null,      // current EventSource
  gen: 0,            // bumps on every room switch; stale async work checks it
  pending: null,     // {text, id} of a post waiting for a token
};

// ---- helpers ---------------------------------------------------------------

const roomUrl = (suffix) =>
  `/api/v1/rooms/${encodeURIComponent(state.room)}/${suffix}`;

function newId() {
  // randomUUID needs a secure context; plain http on a LAN address is not one.
  return crypto.randomUUID?.() ??
    `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/** fetch() with the bearer token; resolves to {status, body} (body may be null). */
async function api(url, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(url, { ...options, headers });
  let body = null;
  try { body = await res.json(); } catch { /* non-JSON body */ }
  return { status: res.status, body };
}

const board = createBoard({
  api, token: () => state.token, send: (text) => post(text, newId()),
});

function setStatus(text, kind = "") {
  ui.status.textContent = text;
  ui.status.dataset.kind = kind;
}

function showError(text) {
  ui.error.textContent = text || "";
  ui.error.hidden = !text;
}

/** With web users the token names the sender: show that name, not the typed one. */
function showSignedIn(name) {
  ui.sender.value = name;
  ui.sender.readOnly = true;
  ui.sender.title = "Signed in with your access token";
}

function askForToken() {
  ui.tokenForm.hidden = false;
  ui.token.value = state.token;
  ui.token.focus();
}

const atBottom = () =>
  ui.list.scrollHeight - ui.list.scrollTop - ui.list.clientHeight < 48;

const scrollToBottom = () => { ui.list.scrollTop = ui.list.scrollHeight; };

// ---- rendering ---------------------------------------------------------------

/** Split text into paragraphs and code blocks (``` fences or 4-space indent). */
function renderText(text) {
  const frag = document.createDocumentFragment();
  const lines = String(text).split("\n");
  const isFence = (line) => /^\s*```/.test(line);
  let prose = [];
  const flushProse = () => {
    const chunk = prose.join("\n").replace(/^\n+|\n+$/g, "");
    if (chunk) frag.append(el("p", "prose", chunk));
    prose = [];
  };
  const flushCode = (code) => {
    while (code.length && !code.at(-1).trim()) code.pop();
    frag.append(el("pre", "code", code.join("\n")));
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (isFence(line)) {                         // ``` … ``` (or to the end)
      flushProse();
      const code = [];
      while (++i < lines.length && !isFence(lines[i])) code.push(lines[i]);
      flushCode(code);
    } else if (line.startsWith("    ") && (!prose.length || !prose.at(-1).trim())) {
      flushProse();                              // indented block after a blank line
      const code = [];
      for (; i < lines.length && (lines[i].startsWith("    ") || !lines[i].trim()); i++) {
        code.push(lines[i].slice(4));
      }
      i--;
      flushCode(code);
    } else {
      prose.push(line);
    }
  }
  flushProse();
  return frag;
}

function formatTime(ts) {
  const d = new Date(ts * 1000);
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  return d.toLocaleString([], opts);
}

/** Add one message (ignores repeats); keeps the list ordered by seq. */
function addMessage(m) {
  if (!m || typeof m.seq !== "number" || state.seen.has(m.seq)) return;
  state.seen.add(m.seq);
  state.lastSeq = Math.max(state.lastSeq, m.seq);

  const li = el("li", `msg ${m.role === "bot" ? "bot" : "user"}`);
  li.dataset.seq = m.seq;
  const meta = el("div", "meta");
  meta.append(el("span", "sender", m.sender || m.role));
  if (typeof m.ts === "number") {
    const time = el("time", "ts", formatTime(m.ts));
    time.dateTime = new Date(m.ts * 1000).toISOString();
    time.title = new Date(m.ts * 1000).toLocaleString();
    meta.append(time);
  }
  const body = el("div", "body");
  body.append(renderText(m.text ?? ""));
  li.append(meta, body);

  // Usually appended at the end; an out-of-order seq goes before the next one.
  const later = [...ui.list.children].find((c) => Number(c.dataset.seq) > m.seq);
  ui.list.insertBefore(li, later || null);
}

function addMessages(messages) {
  const stick = atBottom();
  messages.forEach(addMessage);
  if (stick) scrollToBottom();
}

// ---- history + live events ---------------------------------------------------

async function openRoom() {
  const gen = ++state.gen;
  state.source?.close();
  state.source = null;
  state.seen.clear();
  state.lastSeq = 0;
  ui.list.replaceChildren();
  ui.typing.hidden = true;
  ui.room.value = state.room;
  document.title = `${state.room} · musher`;
  board.showRoom(state.room);
  setStatus("loading…");
  ui.list.setAttribute("aria-busy", "true");    // don't announce the backlog

  let after = 0;
  try {
    for (;;) {                                  // page until the server is done
      const { status, body } = await api(roomUrl(`messages?after=${after}`));
      if (gen !== state.gen) return;            // switched rooms meanwhile
      if (status === 401) { setStatus("token needed", "bad"); askForToken(); return; }
      if (status !== 200 || !body) throw new Error(body?.error || `HTTP ${status}`);
      addMessages(body.messages || []);
      const next = Number(body.next) || 0;
      if (!body.messages?.length || next <= after) { after = Math.max(after, next); break; }
      after = next;
    }
  } catch (err) {
    if (gen !== state.gen) return;
    setStatus(`offline: ${err.message}`, "bad");
    setTimeout(() => gen === state.gen && openRoom(), 5000);
    return;
  }
  ui.list.setAttribute("aria-busy", "false");
  scrollToBottom();
  connect(gen, Math.max(after, state.lastSeq));
}

function connect(gen, after) {
  let url = roomUrl(`events?after=${after}`);
  if (state.token) url += `&token=${encodeURIComponent(state.token)}`;
  const es = new EventSource(url);
  state.source = es;

  es.onopen = () => setStatus("live", "ok");
  es.addEventListener("message", (e) => {
    let m;
    try { m = JSON.parse(e.data); } catch { return; }  // ignore a bad frame
    addMessages([m]);
    if (m.role === "bot") board.roomActivity();      // maybe a `switch`: recheck
  });
  es.addEventListener("typing", (e) => {
    try { ui.typing.hidden = !JSON.parse(e.data).active; } catch { /* ignore */ }
  });
  es.onerror = () => {
    ui.typing.hidden = true;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. an HTTP error): reopen ourselves, later.
      setStatus("disconnected, retrying…", "bad");
      setTimeout(() => gen === state.gen && connect(gen, state.lastSeq), 5000);
    } else {
      setStatus("reconnecting…", "bad"); // EventSource retries with Last-Event-ID
    }
  };
}

// ---- typing ------------------------------------------------------------------
// While the person types, the page says so every few seconds (the daemon counts each
// signal for 6 s) and says "stopped" when they send or empty the box: a burst of their
// messages then closes a moment after the last one instead of after the full window.

const TYPING_REPEAT_MS = 3000;
let typingSince = 0; // when the last "typing" was posted; 0 = not typing

function postTyping(typing) {
  const sender = ui.sender.value.trim() || "you";
  api(roomUrl("typing"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sender, typing }),
  }).catch(() => {}); // a lost signal only means the plain window
}

function noteTyping() {
  const typing = ui.text.value.trim() !== "";
  const now = Date.now();
  if (typing && now - typingSince >= TYPING_REPEAT_MS) {
    typingSince = now;
    postTyping(true);
  } else if (!typing && typingSince) {
    typingSince = 0;
    postTyping(false);
  }
}

ui.text.addEventListener("input", noteTyping);

// ---- sending -----------------------------------------------------------------

async function post(text, id) {
  typingSince = 0; // the message itself ends the typing
  ui.send.disabled = true;
  ui.text.readOnly = true;
  try {
    const sender = ui.sender.value.trim() || "you";
    const { status, body } = await api(roomUrl("messages"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sender, text, id }),
    });
    if (status === 202 || status === 200) {
      state.pending = null;
      showError("");
      if (ui.text.value === text) ui.text.value = "";
      if (body?.sender && body.sender !== sender) showSignedIn(body.sender);
    } else if (status === 401 || status === 403) { // no token, or one that may only read
      state.pending = { text, id };              // retried after the token form
      showError(body?.error || "A token is required.");
      askForToken();
    } else {
      showError(body?.error || `Could not send (HTTP ${status}).`);
    }
  } catch (err) {
    showError(`Could not send: ${err.message}`);
  } finally {
    ui.send.disabled = false;
    ui.text.readOnly = false;
  }
}

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = ui.text.value;
  if (!text.trim() || ui.send.disabled) return;
  post(text, newId());
  ui.text.focus();
});

ui.text.addEventListener("keydown", (e) => {
  // Enter sends, Shift+Enter inserts a newline; leave IME composition alone.
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});

ui.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = ui.token.value.trim();
  if (state.token) localStorage.setItem(KEY_TOKEN, state.token);
  else localStorage.removeItem(KEY_TOKEN);
  ui.tokenForm.hidden = true;
  showError("");
  openRoom();                                   // reload history + SSE with it
  // Retry the post that hit 401, unless its text was edited since.
  if (state.pending && state.pending.text === ui.text.value) {
    post(state.pending.text, state.pending.id);
  }
  state.pending = null;
});

// ---- room + sender -----------------------------------------------------------

function roomFromHash() {
  const room = new URLSearchParams(location.hash.slice(1)).get("room");
  return room && ROOM_RE.test(room) ? room : "lobby";
}

ui.roomForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const room = ui.room.value.trim();
  if (!ROOM_RE.test(room)) {
    showError("Room names use letters, digits and . _ : - (up to 128).");
    return;
  }
  showError("");
  location.hash = `room=${room}`;              // validated, URL-safe → hashchange
  ui.text.focus();
});
ui.room.addEventListener("change", () => ui.roomForm.requestSubmit());

window.addEventListener("hashchange", () => {
  const room = roomFromHash();
  if (room !== state.room) { state.room = room; openRoom(); }
});

ui.sender.value = localStorage.getItem(KEY_SENDER) || "you";
ui.sender.addEventListener("change", () => {
  const name = ui.sender.value.trim() || "you";
  ui.sender.value = name;
  localStorage.setItem(KEY_SENDER, name);
});

// ---- start -------------------------------------------------------------------

state.room = roomFromHash();
if (!location.hash) history.replaceState(null, "", `#room=${state.room}`);
openRoom();
