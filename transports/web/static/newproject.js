// "New project" for web admins: a name field that sends `new project <name>` through the
// chat, so the command validates it and its progress lines appear in the chat as for a
// typed command. GET /api/v1/me says whether the page's user is an admin; the command
// checks again, so hiding the button is a courtesy, not the guard.

export function createNewProject({ api, send }) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    open: $("new-project"), form: $("new-project-form"), name: $("new-project-name"),
    cancel: $("new-project-cancel"),
  };

  function hide() {
    ui.form.hidden = true;
    ui.open.setAttribute("aria-expanded", "false");
  }

  ui.open.addEventListener("click", () => {
    ui.form.hidden = !ui.form.hidden;
    ui.open.setAttribute("aria-expanded", String(!ui.form.hidden));
    if (!ui.form.hidden) ui.name.focus();
  });
  ui.cancel.addEventListener("click", () => { hide(); ui.open.focus(); });
  ui.form.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.preventDefault(); hide(); ui.open.focus(); }
  });
  ui.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = ui.name.value.trim();
    if (!name) { ui.name.focus(); return; }
    send(`new project ${name}`);
    ui.name.value = "";
    hide();
  });

  return {
    /** Show the button when the page's user is a web admin. */
    async load() {
      try {
        const { status, body } = await api("/api/v1/me");
        ui.open.hidden = !(status === 200 && body?.admin);
      } catch {
        ui.open.hidden = true;
      }
      if (ui.open.hidden) hide();
    },
  };
}
