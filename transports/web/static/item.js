// The item detail panel: one item's full text, stage, dependencies (links to their cards),
// pending timers, cost and its history from the op log (who, what, when, from where).
// It reads GET /api/v1/projects/{p}/items/{n} and …/history, and reads them again after
// every board frame while it is open, so it follows the item live. Text only, never markup.
// Its Agent section (agent.js) shows the item's agent and offers Stop / Start.

import { createAgentSection } from "./agent.js";
import { el } from "./dom.js";

const usd = (value) => `$${Number(value || 0).toFixed(4)}`;
const when = (ts) => new Date(ts * 1000).toLocaleString([], {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

/** `api(url)` is the page's fetch helper; `send(text)` posts a chat command as the page's
 * user; `onClose(n)` runs after the panel closes. */
export function createItemPanel({ api, send, onClose }) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    panel: $("item-panel"), title: $("item-title"), close: $("item-close"),
    body: $("item-body"),
  };
  const state = { project: null, number: null, gen: 0 };
  const agent = createAgentSection({ api, send });

  function close() {
    if (state.number === null) return;
    const number = state.number;
    state.number = null;
    state.gen++;
    agent.close();
    ui.panel.hidden = true;
    onClose(number);
  }

  ui.close.addEventListener("click", close);
  document.addEventListener("keydown", (e) => {   // Escape closes it from anywhere
    if (e.key === "Escape" && state.number !== null && !e.defaultPrevented) {
      e.preventDefault();
      close();
    }
  });
  ui.body.addEventListener("click", (e) => {
    const link = e.target.closest?.("[data-item]");
    if (link) open(state.project, Number(link.dataset.item));
  });

  async function load(gen, focus) {
    const base = `/api/v1/projects/${encodeURIComponent(state.project)}/items/${state.number}`;
    const [item, history] = await Promise.all([api(base), api(`${base}/history`)]);
    if (gen !== state.gen) return;
    if (item.status !== 200) {
      ui.title.textContent = `#${state.number}`;
      ui.body.replaceChildren(el("p", "item-error", item.body?.error || `HTTP ${item.status}`));
      return;
    }
    ui.title.textContent = `#${item.body.number} ${item.body.title}`;
    ui.body.replaceChildren(...facts(item.body), ...timeline(history.body?.history || []));
    if (focus) ui.close.focus();
  }

  function open(project, number) {
    state.project = project;
    state.number = number;
    const gen = ++state.gen;
    ui.panel.hidden = false;
    ui.panel.dataset.number = number;
    agent.follow(project, number);
    load(gen, true).catch((err) => gen === state.gen && ui.body.replaceChildren(
      el("p", "item-error", `Cannot load #${number}: ${err.message}`)));
  }

  return {
    open,
    close,
    /** A board frame arrived: re-read the open item (it may have moved). */
    refresh(project) {
      if (state.number === null) return;
      if (project !== state.project) { close(); return; }
      const gen = ++state.gen;
      load(gen, false).catch(() => {});    // the next frame tries again
      agent.follow(state.project, state.number);
    },
    get number() { return state.number; },
  };
}

function section(title, ...children) {
  const box = el("section", "item-section");
  box.append(el("h4", "item-heading", title), ...children);
  return box;
}

function facts(item) {
  const dl = el("dl", "item-facts");
  const row = (term, value) => dl.append(el("dt", "", term), el("dd", "", value));
  row("Stage", item.detail ? `${item.stage} (${item.detail})` : item.stage);
  row("Kind", item.kind);
  if (item.badge && item.badge !== "active") row("Badge", item.badge);
  row("Cost", `${usd(item.cost?.usd)} over ${item.cost?.turns ?? 0} turns`);
  row("Created", when(item.created_at));
  row("Updated", when(item.updated_at));
  const out = [dl];
  if (item.body?.trim()) out.push(section("Text", el("p", "item-text", item.body.trim())));
  if (item.dependencies?.length) {
    const list = el("ul", "item-deps");
    for (const dep of item.dependencies) {
      const link = el("button", "item-link", `#${dep.number} ${dep.title}`);
      link.type = "button";
      link.dataset.item = dep.number;
      const li = el("li");
      li.append(link, ` (${dep.column})`);
      list.append(li);
    }
    out.push(section("Depends on", list));
  }
  if (item.timers?.length) {
    const list = el("ul", "item-timers");
    for (const t of item.timers) {
      const action = Object.entries(t.action || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      list.append(el("li", "", `${t.id}: ${action || "timer"} at ${when(t.fire_at)}`));
    }
    out.push(section("Timers", list));
  }
  return out;
}

function timeline(entries) {
  const list = el("ol", "item-history");
  list.setAttribute("aria-label", "History");
  for (const entry of entries) {
    const li = el("li", "history-entry");
    li.dataset.kind = entry.kind;
    const time = el("time", "history-when", when(entry.ts));
    time.dateTime = new Date(entry.ts * 1000).toISOString();
    li.append(time, " ", el("span", "history-who", entry.who), ": ",
      el("span", "history-what", entry.summary));
    list.append(li);
  }
  return [section("History", list)];
}
