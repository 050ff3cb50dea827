// The cost chart: spend per UTC day over the last 14 days as an inline SVG bar chart, the
// top items, and the last 24 h total worded as the `cost` command words it. It reads
// GET /api/v1/cost when the page opens and again (at most every few seconds) after the
// bot speaks, since only turns cost money. The figure has a fixed size: no layout shift.

import { el, svg } from "./dom.js";

const WIDTH = 280;
const HEIGHT = 64;
const GAP = 2;
const SETTLE_MS = 1500;

const usd = (value) => `$${Number(value || 0).toFixed(4)}`;

export function createCostChart({ api }) {
  const $ = (id) => document.getElementById(id);
  const ui = { chart: $("cost-chart"), total: $("cost-total"), top: $("cost-top") };
  const state = { timer: null, busy: false };

  function draw(data) {
    const days = data.days || [];
    const spent = days.reduce((sum, d) => sum + d.usd, 0);
    const max = Math.max(...days.map((d) => d.usd), 0);
    const chart = svg("svg", {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "cost-svg",
      "aria-label": `Cost per day, last ${days.length} days: ${usd(spent)}`,
    });
    const step = WIDTH / Math.max(days.length, 1);
    days.forEach((day, i) => {
      const h = max > 0 ? Math.max((day.usd / max) * (HEIGHT - 4), day.usd > 0 ? 2 : 0) : 0;
      const bar = svg("rect", {
        x: (i * step + GAP / 2).toFixed(1), y: (HEIGHT - 1 - h).toFixed(1),
        width: (step - GAP).toFixed(1), height: h.toFixed(1), class: "cost-bar",
        "data-date": day.date, "data-usd": day.usd,
      });
      const title = svg("title");
      title.textContent = `${day.date}: ${usd(day.usd)} (${day.turns} turns)`;
      bar.append(title);
      chart.append(bar);
    });
    chart.append(svg("line", { x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5,
      class: "cost-axis" }));
    ui.chart.replaceChildren(chart);
    const last = data.last_24h || { usd: 0, turns: 0 };
    ui.total.textContent =
      `Last 24 h: ${usd(last.usd)} over ${last.turns} turns · 14 days: ${usd(spent)}`;
    ui.top.replaceChildren(...(data.top_items || []).map((t) =>
      el("li", "", `${t.project} #${t.item}: ${usd(t.usd)}`)));
  }

  async function load() {
    if (state.busy) return;
    state.busy = true;
    try {
      const { status, body } = await api("/api/v1/cost?days=14");
      if (status === 200 && body) draw(body);
    } finally {
      state.busy = false;
    }
  }

  return {
    load: () => load().catch(() => {}),
    /** The bot spoke (a turn may have cost something): read again shortly. */
    later() {
      clearTimeout(state.timer);
      state.timer = setTimeout(() => load().catch(() => {}), SETTLE_MS);
    },
  };
}
