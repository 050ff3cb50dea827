// Moving cards by hand: drag a card to another column, or focus it, pick a column with the
// arrow keys and press Enter. Either way the page sends `move N <stage>` as its user through
// the chat (the same command, the same rights, the same reply as typed); it never writes.
// The card waits in the new column (dimmed) until the next board frame or the bot's reply:
// then the board is drawn again from the server's truth, so a refused move snaps back.

/** The `move` target of each droppable column ("closed" takes no drops: use the chat). */
const TARGETS = ["backlog", "coding", "qa", "merge", "done"];

const GIVE_UP_MS = 15000;

/** Badge → the command that clears it, offered on the card's menu. */
export const BADGE_ACTIONS = {
  "frozen": "unfreeze",
  "blocked": "unblock",
  "review-hold": "release",
};

/**
 * Wire drag and keyboard moves on `columns` (the #board-columns element). `send(text)`
 * posts a chat command; `restore()` redraws the board from the last frame; `open(n)`
 * opens the detail panel of item `n`.
 */
export function createMoves({ columns, send, restore, open }) {
  const state = { pending: false, dragging: null, timer: null };

  const listOf = (column) => columns.querySelector(`.column[data-column="${column}"] .cards`);
  const columnOf = (node) => node.closest(".column")?.dataset.column;

  /** Put `card` into `target`'s column for now and send the move. */
  function commit(card, target) {
    const home = card.dataset.home;
    if (!TARGETS.includes(target) || target === home) { restore(); return; }
    const list = listOf(target);
    if (list && card.parentElement !== list) list.append(card);
    card.classList.add("pending");
    card.setAttribute("aria-busy", "true");
    state.pending = true;
    clearTimeout(state.timer);              // no frame and no reply (a failed post): redraw
    state.timer = setTimeout(() => state.pending && restore(), GIVE_UP_MS);
    send(`move ${card.dataset.number} ${target}`);
  }

  columns.addEventListener("dragstart", (e) => {
    const card = e.target.closest?.(".card");
    if (!card || state.pending) { e.preventDefault(); return; }
    state.dragging = card;
    e.dataTransfer.effectAllowed = "move";
    e.dataTransfer.setData("text/plain", `#${card.dataset.number}`);
    card.classList.add("dragging");
  });
  columns.addEventListener("dragend", () => {
    state.dragging?.classList.remove("dragging");
    state.dragging = null;
    for (const col of columns.querySelectorAll(".drop")) col.classList.remove("drop");
  });
  columns.addEventListener("dragover", (e) => {
    const target = columnOf(e.target);
    if (!state.dragging || !TARGETS.includes(target)) return;
    e.preventDefault();                     // this column takes the drop
    e.dataTransfer.dropEffect = "move";
    for (const col of columns.querySelectorAll(".drop")) col.classList.remove("drop");
    e.target.closest(".column").classList.add("drop");
  });
  columns.addEventListener("drop", (e) => {
    const card = state.dragging;
    const target = columnOf(e.target);
    if (!card || !TARGETS.includes(target)) return;
    e.preventDefault();
    commit(card, target);
  });

  columns.addEventListener("keydown", (e) => {
    const card = e.target.closest?.(".card");
    if (!card || e.target !== card || state.pending) return;
    if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      e.preventDefault();
      const at = TARGETS.indexOf(columnOf(card));
      const next = TARGETS[at < 0 ? 0 : at + (e.key === "ArrowLeft" ? -1 : 1)];
      if (!next) return;
      listOf(next).append(card);            // a preview: nothing is sent before Enter
      card.classList.toggle("moving", next !== card.dataset.home);
      card.setAttribute("aria-description", next === card.dataset.home
        ? "" : `Enter moves it to ${next}, Escape cancels`);
      card.focus();
    } else if (e.key === "Enter") {
      e.preventDefault();
      const target = columnOf(card);
      if (target !== card.dataset.home) commit(card, target);
      else open(Number(card.dataset.number));
    } else if (e.key === "Escape" && card.classList.contains("moving")) {
      e.preventDefault();
      restore();
    }
  });

  columns.addEventListener("click", (e) => {
    const action = e.target.closest?.("[data-action]");
    if (action) {
      const card = action.closest(".card");
      send(`${action.dataset.action} ${card.dataset.number}`);
      return;
    }
    if (e.target.closest?.(".card-menu")) return;
    const card = e.target.closest?.(".card");
    if (card && !state.pending) open(Number(card.dataset.number));
  });

  return {
    /** A new frame (or the bot's reply) arrived: whatever was pending is settled. */
    settle() {
      state.pending = false;
      clearTimeout(state.timer);
    },
    get pending() { return state.pending; },
  };
}
