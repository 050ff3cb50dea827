// The item panel's Agent section: the item's agent (state, profile, runtime, turns, cost),
// its latest progress lines (tool calls, commits, gate results), and Stop / Start buttons
// that send `stop N` / `start N` as chat commands, so they carry the same rights and get the
// same reply as typed ones (a refusal shows in the chat). While the agent is active the
// section reads GET /api/v1/projects/{p}/items/{n}/agent again every POLL_MS; that is its
// only way of following it. The section is updated in place: the buttons keep focus.

import { el } from "./dom.js";

const POLL_MS = 2000;
const LINES = 50;

/** Agent state → what the page calls it (cards and panel). */
export const AGENT_STATES = {
  "pending": "starting",
  "running": "running",
  "queued": "queued",
  "rate_limited": "rate-limited",
  "completed": "completed",
  "failed": "failed",
};

/** What the page calls an agent's state; a failed run that was stopped by hand says so. */
export function agentState(agent) {
  if (agent.state === "failed" && agent.reason?.startsWith("stopped")) return "stopped";
  return AGENT_STATES[agent.state] || agent.state;
}

/** States in which an agent holds or waits for a slot: Stop applies, the panel polls. */
export const ACTIVE = new Set(["pending", "running", "queued", "rate_limited"]);

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function button(text, className) {
  const node = el("button", className, text);
  node.type = "button";
  return node;
}

/** `api(url)` is the page's fetch helper; `send(text)` posts a chat command as its user. */
export function createAgentSection({ api, send }) {
  const box = document.getElementById("item-agent");
  const status = el("p", "agent-status");
  status.setAttribute("role", "status");
  const facts = el("dl", "agent-facts");
  const stop = button("Stop", "agent-stop");
  const start = button("Start", "agent-start");
  const actions = el("div", "agent-actions");
  actions.append(stop, start);
  const lines = el("ol", "agent-lines");
  lines.setAttribute("aria-label", "Agent progress");
  lines.tabIndex = 0;                       // scrollable by keyboard
  const head = el("div", "agent-head");
  head.append(status, actions);
  box.replaceChildren(head, facts, lines);
  const state = { project: null, number: null, gen: 0, timer: null };

  stop.addEventListener("click", () => state.number && send(`stop ${state.number}`));
  start.addEventListener("click", () => state.number && send(`start ${state.number}`));

  function show(body) {
    const agent = body.agent;
    const active = ACTIVE.has(agent?.state);
    status.textContent = agent ? `Agent ${agentState(agent)}`
      : "No agent has worked on this item.";
    status.dataset.state = agent?.state || "none";
    const rows = [];
    if (agent?.profile) rows.push(["Profile", agent.profile]);
    if (agent?.started) {
      const until = active ? Date.now() / 1000 : agent.last || agent.started;
      rows.push(["Runtime", duration(until - agent.started)]);
    }
    if (agent) {
      rows.push(["Turns", String(agent.turns ?? 0)]);
      rows.push(["Cost", `$${Number(agent.cost_usd || 0).toFixed(4)}`]);
      if (agent.attempts) rows.push(["Attempts", String(agent.attempts)]);
      if (!active && agent.reason) rows.push(["Ended", agent.reason]);
    }
    facts.replaceChildren(...rows.flatMap(([t, v]) => [el("dt", "", t), el("dd", "", v)]));
    const hadFocus = document.activeElement === stop || document.activeElement === start;
    stop.hidden = !active;
    start.hidden = active;
    start.textContent = agent ? "Retry" : "Start";
    if (hadFocus && document.activeElement !== stop && document.activeElement !== start) {
      (active ? stop : start).focus();      // the button pressed went away: keep the place
    }
    const stick = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 24;
    const shown = body.lines || [];
    lines.replaceChildren(...shown.map((line) => el("li", "agent-line", line)));
    lines.hidden = shown.length === 0;
    if (stick) lines.scrollTop = lines.scrollHeight;
    return active;
  }

  async function poll(gen) {
    clearTimeout(state.timer);
    state.timer = null;
    const url = `/api/v1/projects/${encodeURIComponent(state.project)}`
      + `/items/${state.number}/agent?lines=${LINES}`;
    let again = true;
    try {
      const { status: code, body } = await api(url);
      if (gen !== state.gen) return;
      if (code === 200 && body) again = show(body);
      else status.textContent = body?.error || `Agent: HTTP ${code}`;
    } catch (err) {
      if (gen !== state.gen) return;
      status.textContent = `Agent: ${err.message}`;
    }
    if (again) state.timer = setTimeout(() => poll(gen), POLL_MS);
  }

  return {
    /** Show item `number`'s agent (the panel opened it, or a board frame arrived). */
    follow(project, number) {
      if (project !== state.project || number !== state.number) {
        state.project = project;
        state.number = number;
        status.textContent = "Agent: loading…";
        facts.replaceChildren();
        lines.replaceChildren();
      }
      box.hidden = false;
      poll(++state.gen);
    },
    close() {
      state.gen++;
      state.number = null;
      clearTimeout(state.timer);
      state.timer = null;
    },
  };
}
