// musher web console: the pipeline board of the room's project, live over SSE.
//
// The server sends `event: items` with the whole board ({project, items}) on connect
// and after every change, so rendering is a pure function of the last frame. Which
// project a room works on is asked from /api/v1/rooms/{room}/project when the room
// opens and again whenever the bot says something (a `switch` is a chat command).
// Like the chat, every string from the server goes through textContent only.
// Cards are also a way to issue commands (moves.js), open an item (item.js), and the
// pane shows what turns cost (cost.js); none of them writes anything but chat commands.

import { ACTIVE, AGENT_STATES } from "./agent.js";
import { createCostChart } from "./cost.js";
import { el } from "./dom.js";
import { createItemPanel } from "./item.js";
import { BADGE_ACTIONS, createMoves } from "./moves.js";
import { createNewProject } from "./newproject.js";

const COLUMNS = [
  ["backlog", "Backlog"], ["coding", "Coding"], ["qa", "QA"],
  ["merge", "Merge"], ["done", "Done"], ["closed", "Closed"],
];

// Badge → [emoji, label]. "active" and "done" need no marker: the column says it.
const BADGES = {
  "frozen": ["❄️", "frozen"],
  "blocked": ["⛔", "blocked"],
  "review-hold": ["🔍", "review hold"],
  "merge-failure": ["⚠️", "merge failed"],
  "abandoned": ["🗑️", "abandoned"],
  "superseded": ["🔀", "superseded"],
  "rejected": ["🚫", "rejected"],
};

const RETRY_MS = 5000;

/** One item as a card: `#12 Title`, its kind and badge, unmet deps, the stage detail,
 * and a menu with the command that clears its badge. Focusable and draggable. */
function card(item) {
  const li = el("li", "card");
  li.dataset.number = item.number;
  li.dataset.badge = item.badge;
  li.dataset.kind = item.kind;
  li.dataset.home = item.column;
  li.tabIndex = 0;
  li.draggable = item.column !== "archived";
  li.setAttribute("aria-label", `#${item.number} ${item.title}, ${item.stage}`);

  const title = el("p", "card-title");
  title.append(el("span", "card-number", `#${item.number}`), ` ${item.title}`);
  li.append(title);

  const meta = el("p", "card-meta");
  meta.append(el("span", "kind", item.kind));
  const badge = BADGES[item.badge];
  if (badge) {
    const tag = el("span", "badge", `${badge[0]} ${badge[1]}`);
    if (item.badge === "frozen") tag.title = `frozen in ${item.column}`;
    meta.append(tag);
  }
  const agent = item.agent?.state;
  if (ACTIVE.has(agent)) {              // inline in the meta line: the card keeps its height
    const says = `agent ${agent === "pending" ? "running" : AGENT_STATES[agent]}`;
    const mark = el("span", "card-agent", says);
    mark.dataset.state = agent;
    mark.setAttribute("aria-label", says);
    mark.title = item.agent.profile ? `${says} (${item.agent.profile})` : says;
    meta.append(mark);
  }
  li.append(meta);

  if (item.waiting_on?.length) {
    li.append(el("p", "card-wait",
      `waiting on ${item.waiting_on.map((n) => `#${n}`).join(", ")}`));
  }
  if (item.detail) li.append(el("p", "card-detail", item.detail));
  const action = BADGE_ACTIONS[item.badge];
  if (action) {
    const menu = el("details", "card-menu");
    const summary = el("summary", "card-menu-button", "⋯");
    summary.setAttribute("aria-label", `Actions for #${item.number}`);
    const button = el("button", "card-action", action);
    button.type = "button";
    button.dataset.action = action;
    menu.append(summary, button);
    li.append(menu);
  }
  return li;
}

/**
 * The board in #board (see index.html). `api(url)` is the chat's fetch helper (it adds
 * the bearer token); `token()` gives the token for the EventSource URL; `send(text)`
 * posts a chat message as the page's user (the project picker sends `switch <project>`,
 * so a switch from the page is the same command, with the same rights, as a typed one).
 */
export function createBoard({ api, token, send }) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    project: $("board-project"), total: $("board-total"), note: $("board-note"),
    slots: $("agent-slots"),
    picker: $("project-picker"),
    columns: $("board-columns"), archived: $("board-archived"),
    archivedCount: $("board-archived-count"), archivedList: $("board-archived-list"),
  };
  const state = {
    room: null,
    project: null,    // the project shown (null: none yet)
    source: null,     // the board's EventSource
    epoch: 0,         // bumps on showRoom(); a room-project answer for an older one is dropped
    gen: 0,           // bumps on every (re)connect; frames and retries of older ones are dropped
    checking: null,   // the room-project request in flight, if any
    again: false,     // another check was asked for while one was in flight
    items: [],        // the last frame's items (a refused move redraws them)
  };

  // The six columns are built once; each frame only replaces their cards.
  const lists = new Map();
  for (const [key, label] of COLUMNS) {
    const col = el("section", "column");
    col.dataset.column = key;
    const head = el("h3", "column-head");
    const count = el("span", "count", "0");
    head.append(el("span", "column-name", label), count);
    const list = el("ol", "cards");
    list.setAttribute("aria-label", label);
    col.append(head, list);
    ui.columns.append(col);
    lists.set(key, { list, count });
  }

  /** Fill the picker from GET /api/v1/projects, with `current` selected. */
  async function loadProjects(current, epoch) {
    const { status, body } = await api("/api/v1/projects");
    if (epoch !== state.epoch || status !== 200 || !Array.isArray(body?.projects)) return;
    const options = body.projects.map(({ name }) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    });
    ui.picker.replaceChildren(...options);
    ui.picker.value = current || "";
    ui.picker.hidden = options.length < 2;  // nothing to switch to
  }

  const panel = createItemPanel({
    api, send, onClose: (n) => ui.columns.querySelector(`.card[data-number="${n}"]`)?.focus(),
  });
  const moves = createMoves({
    columns: ui.columns, send, restore: () => render(state.items),
    open: (n) => state.project && panel.open(state.project, n),
  });
  const openCard = (e) => {             // archived cards open too (they do not move)
    const found = e.target.closest?.(".card");
    if (!found || (e.type === "keydown" && e.key !== "Enter")) return;
    if (state.project) panel.open(state.project, Number(found.dataset.number));
  };
  ui.archivedList.addEventListener("click", openCard);
  ui.archivedList.addEventListener("keydown", openCard);
  const cost = createCostChart({ api });
  const newProject = createNewProject({ api, send });

  ui.picker.addEventListener("change", () => {
    const name = ui.picker.value;
    if (name && name !== state.project) send(`switch ${name}`);
  });

  function note(text) {
    ui.note.textContent = text || "";
    ui.note.title = text || "";           // the line is clipped on narrow screens
    ui.note.hidden = !text;
  }

  function render(items) {
    state.items = items;
    moves.settle();
    const focused = document.activeElement?.closest?.("#board .card")?.dataset.number;
    const by = new Map([...lists.keys(), "archived"].map((k) => [k, []]));
    for (const item of items) by.get(item.column)?.push(item);
    for (const [key, { list, count }] of lists) {
      const cards = by.get(key);
      list.replaceChildren(...cards.map(card));
      count.textContent = String(cards.length);
    }
    const archived = by.get("archived");
    ui.archivedList.replaceChildren(...archived.map(card));
    ui.archivedCount.textContent = String(archived.length);
    ui.archived.hidden = archived.length === 0;
    const shown = items.length - archived.length;
    ui.total.textContent = `${shown} item${shown === 1 ? "" : "s"}`;
    note(items.length ? "" : "No items yet. Try “new story Login page” in the chat.");
    if (focused) ui.columns.querySelector(`.card[data-number="${focused}"]`)?.focus();
  }

  /** The header's `agents 2/3`: the pool's slots in use (hidden without a pool). */
  function slots(agents) {
    const known = agents && Number.isFinite(agents.busy) && Number.isFinite(agents.max);
    ui.slots.hidden = !known;
    if (!known) return;
    ui.slots.textContent = `agents ${agents.busy}/${agents.max}`;
    ui.slots.title = `${agents.busy} of ${agents.max} agent slots in use`;
    ui.slots.dataset.busy = agents.busy > 0 ? "yes" : "no";
  }

  function clear() {
    render([]);
    slots(null);
    ui.total.textContent = "";
    note("");
  }

  function connect(gen, project) {
    state.source?.close();
    let url = `/api/v1/projects/${encodeURIComponent(project)}/events`;
    if (token()) url += `?token=${encodeURIComponent(token())}`;
    const es = new EventSource(url);
    state.source = es;
    es.addEventListener("items", (e) => {
      if (gen !== state.gen) return;
      let frame;
      try { frame = JSON.parse(e.data); } catch { return; }  // ignore a bad frame
      if (frame.project !== state.project) return;
      render(frame.items || []);
      slots(frame.agents);
      panel.refresh(frame.project);
    });
    es.onerror = () => {
      if (gen !== state.gen || es.readyState !== EventSource.CLOSED) return;
      // The browser gave up (an HTTP error, e.g. the project is gone): ask again later.
      note("Board disconnected, retrying…");
      setTimeout(() => gen === state.gen && refresh(true), RETRY_MS);
    };
  }

  /** Ask which project the room works on; reconnect when it changed (or `force`). */
  function refresh(force = false) {
    if (state.checking) {             // one request at a time; ask once more after it
      state.again ||= force ? "force" : "check";
      return;
    }
    const epoch = state.epoch;
    const run = check(epoch, force);
    state.checking = run;
    run.finally(() => {
      if (state.checking !== run) return;   // showRoom() moved on meanwhile
      state.checking = null;
      const again = state.again;
      state.again = false;
      if (again) refresh(again === "force");
    });
  }

  async function check(epoch, force) {
    const room = state.room;
    try {
      const { status, body } = await api(`/api/v1/rooms/${encodeURIComponent(room)}/project`);
      if (epoch !== state.epoch) return;    // another room (or a reload) since
      if (status === 401) { note("The board needs the access token."); return; }
      if (status !== 200 || !body) throw new Error(body?.error || `HTTP ${status}`);
      const project = body.project ?? null;
      loadProjects(project, epoch).catch(() => {});  // the picker is a convenience
      if (project === state.project && state.source && !force) return;
      const gen = ++state.gen;
      if (project !== state.project) {
        state.project = project;
        panel.close();
        ui.project.textContent = project || "no project";
        clear();
      }
      if (project) connect(gen, project);
      else {
        state.source?.close();
        state.source = null;
        note("This room has no project yet.");
      }
    } catch (err) {
      if (epoch !== state.epoch) return;
      note(`Board offline: ${err.message}`);
      const gen = state.gen;
      setTimeout(() => gen === state.gen && refresh(true), RETRY_MS);
    }
  }

  return {
    /** The page opened `room` (or reloaded it): show that room's project. */
    showRoom(room) {
      if (room !== state.room) {
        state.room = room;
        state.project = null;
        ui.project.textContent = "";
        clear();
      }
      cost.load();                      // and the token may have changed: ask again
      newProject.load();
      state.epoch++;                    // answers for the old room are ignored on return
      state.gen++;                      // and so are its frames and retries
      state.checking = null;
      state.again = false;
      refresh(true);
    },
    /** The bot said something in the room: it may have been a `switch`. */
    roomActivity() {
      if (moves.pending) render(state.items);   // the reply came: show the truth
      cost.later();
      if (state.room) refresh(false);
    },
  };
}
