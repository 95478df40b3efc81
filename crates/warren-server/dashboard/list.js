// The sandboxes list: newest first, filtered by state, refreshed every two seconds so state
// changes appear without a reload (the API has no cross-sandbox stream; a list page is cheap).

import { get, sandboxPath } from "./api.js";
import { h, replace, age, tokens, cost, stateBadge, errorBox } from "./ui.js";

const REFRESH_MS = 2000;
const STATES = [
  "new", "queued", "provisioning", "running", "completed", "saving", "tearing_down", "error", "destroyed",
];

// Changed files of idle sandboxes not exported yet come from their status (the record counts
// them at export), fetched once per change of the sandbox, not on every refresh.
const changedCache = new Map();
const IDLE = new Set(["completed", "error"]);

function changedCell(s) {
  const cell = h("td", { "data-label": "Changed files", class: "num" });
  if (s.changed_files !== null && s.changed_files !== undefined && s.exported_at) {
    cell.textContent = String(s.changed_files);
    return cell;
  }
  if (!IDLE.has(s.state)) {
    cell.textContent = "–";
    return cell;
  }
  const key = `${s.name}@${s.updated_at}`;
  let count = changedCache.get(key);
  if (count === undefined) {
    count = get(sandboxPath(s.name, "/status")).then(
      (st) => st.changed_files.length,
      () => null,
    );
    changedCache.set(key, count);
  }
  cell.textContent = "…";
  Promise.resolve(count).then((n) => {
    cell.textContent = n === null ? "–" : String(n);
  });
  return cell;
}

function row(s) {
  const link = h("a", { href: `#/sandbox/${encodeURIComponent(s.name)}` }, s.name);
  return h(
    "tr",
    { "data-name": s.name, "data-state": s.state },
    h("th", { scope: "row", "data-label": "Name" }, link),
    h("td", { "data-label": "State" }, stateBadge(s.state)),
    h("td", { "data-label": "Repository", class: "repo" }, h("code", {}, s.repo)),
    h("td", { "data-label": "Model" }, s.model || "default"),
    h("td", { "data-label": "Provider" }, s.provider),
    h("td", { "data-label": "Age" }, h("time", { datetime: s.created_at, title: s.created_at }, age(s.created_at))),
    h("td", { "data-label": "Tokens", class: "num" }, tokens(s.usage)),
    h("td", { "data-label": "Cost", class: "num" }, cost(s.usage)),
    changedCell(s),
  );
}

export function listView(root, query) {
  const params = new URLSearchParams(query);
  let state = params.get("state") || "";
  let timer = null;
  let stopped = false;

  const select = h(
    "select",
    {
      id: "state-filter",
      onchange: () => {
        state = select.value;
        // The filter is in the address, so a reload or a shared link keeps it.
        history.replaceState(null, "", state ? `#/?state=${state}` : "#/");
        refresh();
      },
    },
    h("option", { value: "" }, "all (not destroyed)"),
    STATES.map((s) => h("option", { value: s, selected: s === state }, s.replace("_", " "))),
  );
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const table = h("div", { class: "table-wrap" });
  replace(
    root,
    h(
      "div",
      { class: "heading" },
      h("h1", {}, "Sandboxes"),
      h("a", { class: "button", href: "#/new" }, "New run"),
    ),
    h("div", { class: "filters" }, h("label", { for: "state-filter" }, "State"), select),
    status,
    table,
  );

  let lastCount = -1;
  let lastJson = "";
  async function refresh() {
    clearTimeout(timer);
    const q = new URLSearchParams({ limit: "100" });
    if (state) q.set("state", state);
    if (state === "destroyed") q.set("all", "true");
    try {
      const { sandboxes } = await get(`/v1/sandboxes?${q}`);
      if (stopped) return;
      const json = JSON.stringify(sandboxes);
      if (json === lastJson) {
        // Unchanged: only the ages move, and a focused link keeps its focus.
        for (const t of table.querySelectorAll("time")) t.textContent = age(t.getAttribute("datetime"));
      } else if (sandboxes.length === 0) {
        replace(table, h("p", { class: "empty" }, state ? `No sandbox is ${state.replace("_", " ")}.` : "No sandboxes yet. Start one with New run."));
      } else {
        replace(
          table,
          h(
            "table",
            { class: "sandboxes" },
            h("caption", { class: "sr-only" }, "Sandboxes, newest first"),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Name", "State", "Repository", "Model", "Provider", "Age", "Tokens", "Cost", "Changed files"].map((c) =>
                  h("th", { scope: "col" }, c),
                ),
              ),
            ),
            h("tbody", {}, sandboxes.map(row)),
          ),
        );
      }
      lastJson = json;
      // Announced only when the count changes, not on every refresh.
      if (sandboxes.length !== lastCount) {
        lastCount = sandboxes.length;
        status.textContent = `${sandboxes.length} sandbox${sandboxes.length === 1 ? "" : "es"}`;
      }
    } catch (e) {
      if (stopped) return;
      if (!e.unreachable && e.status !== 401) replace(table, errorBox(e));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
