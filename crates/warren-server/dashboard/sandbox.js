// One sandbox: its live event stream, boot phases, usage, lease and warm server, the diff of the
// agent's changes, and the actions on it (follow-up, cancel, export or download, teardown).

import { get, post, del, request, sandboxPath } from "./api.js";
import { h, replace, age, duration, stateBadge, errorBox, outcomeSlot, act, confirmDialog, field, tokens, cost } from "./ui.js";
import { follow } from "./stream.js";
import { eventItem, phasesOf, figure } from "./events.js";
import { renderChanges } from "./diff.js";
import { runs, onRunEnd } from "./launch.js";

// The event stream says when the state changes (and the status is read again then); this slower
// poll only catches what has no event (a lease expiring, a warm server's idle time). A status
// lists an idle workspace's changes, so it is not read more often than needed.
const STATUS_REFRESH_MS = 10000;
const REFRESH_ON = new Set([
  "state_changed", "exported", "finished", "resynced", "approval_requested", "approval_decided",
  "budget_warning", "budget_exceeded",
]);
const IDLE = new Set(["completed", "error", "destroyed"]);
const BUSY = new Set(["new", "queued", "provisioning", "running", "saving", "tearing_down"]);

function dl(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
}

function download(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function sandboxView(root, name, navigate) {
  let stopped = false;
  let timer = null;
  let status = null;
  let changes = null;
  let changesFor = null;
  const records = [];

  const title = h("h1", {}, name);
  const badge = h("span", { class: "badge-slot" });
  const errorSlot = h("div");
  const facts = h("div");
  const usage = h("div");
  const lease = h("div");
  const phases = h("div");
  const runEnd = h("div", { "aria-live": "polite" });
  const streamState = h("p", { class: "muted stream-state", role: "status" });
  const log = h("ol", { class: "events", role: "log", "aria-label": "Events", "aria-live": "polite" });
  const changesEl = h("div", { class: "changes" });

  // Actions, each with its outcome slot right beside it.
  const followUp = h("textarea", { name: "follow-up", rows: 3 });
  const sendBtn = h("button", { type: "submit" }, "Send follow-up");
  const sendSlot = outcomeSlot();
  const followForm = h(
    "form",
    { class: "action", "aria-label": "Send a follow-up" },
    field("Follow-up prompt", followUp, "continues the same OpenCode session"),
    h("div", { class: "actions" }, sendBtn),
    sendSlot.el,
  );
  followForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!followUp.value.trim()) {
      sendSlot.error({ reason_code: "invalid_argument", message: "the prompt is empty", hint: "type what the agent should do next" });
      return;
    }
    act(sendBtn, sendSlot, async () => {
      await post(sandboxPath(name, "/prompts"), { prompt: followUp.value });
      followUp.value = "";
      sendSlot.note("Sent: the agent is on it.");
      refreshStatus();
    });
  });

  const branch = h("input", { name: "branch", placeholder: `warren/${name}`, autocomplete: "off", spellcheck: "false" });
  const exportBtn = h("button", { type: "submit" }, "Export to branch");
  const patchBtn = h("button", { type: "button", class: "quiet" }, "Download patch");
  const bundleBtn = h("button", { type: "button", class: "quiet" }, "Download bundle");
  const exportSlot = outcomeSlot();
  const exportForm = h(
    "form",
    { class: "action", "aria-label": "Export" },
    field("Branch", branch, "empty for warren/" + name + "; an existing branch is never overwritten"),
    h("div", { class: "actions" }, exportBtn, patchBtn, bundleBtn),
    exportSlot.el,
  );
  exportForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = branch.value.trim() ? { branch: branch.value.trim() } : {};
    act(exportBtn, exportSlot, async () => {
      const { export: done } = await post(sandboxPath(name, "/export"), body);
      exportSlot.note("Exported to ", h("code", {}, done.branch), done.commit ? ` at ${done.commit.slice(0, 12)}` : "", ".");
      refreshStatus();
    });
  });
  patchBtn.addEventListener("click", () =>
    act(patchBtn, exportSlot, async () => {
      const { changes: c } = await get(`${sandboxPath(name, "/changes")}?max_diff_bytes=16777216`);
      if (!c.diff) {
        exportSlot.note(c.files.length ? "Nothing to put in a patch while the agent runs." : "No changes to download.");
        return;
      }
      download(`${name}.patch`, new Blob([c.diff], { type: "text/x-diff" }));
      const left = [...c.binary, ...c.symlinks];
      exportSlot.note(`Downloaded ${name}.patch`, left.length ? ` (without ${left.join(", ")}: export a branch or a bundle for those)` : "", ".");
    }),
  );
  bundleBtn.addEventListener("click", () =>
    act(bundleBtn, exportSlot, async () => {
      const response = await request("GET", sandboxPath(name, "/bundle"), { raw: true });
      download(`${name}.bundle`, await response.blob());
      exportSlot.note(`Downloaded ${name}.bundle: git fetch ${name}.bundle 'refs/heads/*:refs/heads/*'`);
    }),
  );

  // The agent's permission request, when it waits on one: approve, or deny with a reason.
  const approvalEl = h("div");
  const approveBtn = h("button", { type: "button" }, "Approve");
  const denyBtn = h("button", { type: "button", class: "danger" }, "Deny");
  const denyReason = h("input", { name: "deny-reason", autocomplete: "off" });
  const approvalSlot = outcomeSlot();
  let asked = null;
  async function answer(button, decision) {
    const request = asked;
    await act(button, approvalSlot, async () => {
      const body = { decision };
      if (decision === "deny" && denyReason.value.trim()) body.reason = denyReason.value.trim();
      const { approval } = await post(sandboxPath(name, `/approvals/${encodeURIComponent(request.request_id)}`), body);
      denyReason.value = "";
      approvalSlot.note(approval.decision ? `The agent was told: ${approval.decision}.` : `Answered ${decision}; the agent is told at once.`);
      refreshStatus();
    });
  }
  approveBtn.addEventListener("click", () => answer(approveBtn, "approve"));
  denyBtn.addEventListener("click", () => answer(denyBtn, "deny"));
  function renderApproval() {
    const request = status.awaiting_approval;
    if (!request) {
      asked = null;
      replace(approvalEl, approvalSlot.el.textContent ? approvalSlot.el : null);
      return;
    }
    if (asked && asked.request_id === request.request_id) return;
    asked = request;
    const requested = [...records].reverse().find((r) => r.type === "approval_requested" && r.request_id === request.request_id);
    const deadline = requested ? new Date(Date.parse(requested.at) + request.timeout_secs * 1000) : null;
    replace(
      approvalEl,
      h(
        "section",
        { class: "approval", "aria-labelledby": "h-approval", role: "region" },
        h("h2", { id: "h-approval" }, "The agent asks for approval"),
        h("p", {}, `To use ${request.permission} on: `, h("code", {}, request.title)),
        request.patterns.length > 1 ? h("ul", {}, request.patterns.map((p) => h("li", {}, h("code", {}, p)))) : null,
        h("p", { class: "muted" }, deadline ? `Denied at ${deadline.toLocaleTimeString("en-GB")} if nobody answers.` : `Denied after ${request.timeout_secs} s if nobody answers.`),
        field("Reason for a denial (told to the agent)", denyReason),
        h("div", { class: "actions" }, approveBtn, denyBtn),
        approvalSlot.el,
      ),
    );
    approvalSlot.clear();
    approveBtn.focus();
  }

  const cancelBtn = h("button", { type: "button", class: "quiet" }, "Stop the agent");
  const teardownBtn = h("button", { type: "button", class: "danger" }, "Tear down…");
  const lifeSlot = outcomeSlot();
  cancelBtn.addEventListener("click", () =>
    act(cancelBtn, lifeSlot, async () => {
      await post(sandboxPath(name, "/cancel"), undefined);
      lifeSlot.note("Stopping: the work so far is kept.");
      refreshStatus();
    }),
  );
  teardownBtn.addEventListener("click", () => teardown());
  const lifeActions = h("div", { class: "action" }, h("div", { class: "actions" }, cancelBtn, teardownBtn), lifeSlot.el);

  async function teardown() {
    // Ask the server what would be lost, not what this page last saw.
    let current = status;
    try {
      current = await get(sandboxPath(name, "/status"));
    } catch {
      // Decide on what is shown.
    }
    const s = current.sandbox;
    const files = current.changed_files || [];
    const exported = !!s.exported_at;
    const running = BUSY.has(s.state);
    const lost = files.length > 0 && !exported;
    const body = [];
    if (running) body.push(h("p", {}, "The agent is still working: tearing down stops it."));
    if (lost) {
      body.push(
        h("p", {}, `${files.length} changed file${files.length === 1 ? " has" : "s have"} not been exported and would be discarded:`),
        h("ul", { class: "lost" }, files.slice(0, 20).map((f) => h("li", {}, h("code", {}, f.path), ` (${f.kind})`))),
        files.length > 20 ? h("p", {}, `and ${files.length - 20} more.`) : null,
      );
    } else {
      body.push(h("p", {}, exported ? `Its work was exported to ${s.branch || "a branch"}; nothing unexported is discarded.` : "The agent changed nothing: nothing is discarded."));
    }
    const choices = lost
      ? [
          { value: "export", label: `Export to warren/${name}, then tear down` },
          { value: "force", label: `Discard ${files.length} change${files.length === 1 ? "" : "s"} and tear down`, danger: true },
        ]
      : [{ value: running ? "force" : "plain", label: "Tear down", danger: true }];
    const choice = await confirmDialog({ title: `Tear down ${name}?`, body, choices });
    if (!choice) return;
    const query = choice === "export" ? "?export=true" : choice === "force" ? "?force=true" : "";
    await act(teardownBtn, lifeSlot, async () => {
      await del(`${sandboxPath(name)}${query}`);
      lifeSlot.note(`${name} is torn down.`);
      refreshStatus();
    });
  }

  replace(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "← Sandboxes")),
    h("div", { class: "heading" }, title, badge),
    errorSlot,
    approvalEl,
    runEnd,
    h(
      "div",
      { class: "grid" },
      h("section", { "aria-labelledby": "h-about" }, h("h2", { id: "h-about" }, "About"), facts),
      h("section", { "aria-labelledby": "h-usage" }, h("h2", { id: "h-usage" }, "Usage"), usage),
      h("section", { "aria-labelledby": "h-lease" }, h("h2", { id: "h-lease" }, "Lease and warm server"), lease),
      h("section", { "aria-labelledby": "h-phases" }, h("h2", { id: "h-phases" }, "Phases"), phases),
    ),
    h("section", { "aria-labelledby": "h-actions", class: "actions-panel" }, h("h2", { id: "h-actions" }, "Actions"), followForm, exportForm, lifeActions),
    h("section", { "aria-labelledby": "h-events" }, h("h2", { id: "h-events" }, "Events"), streamState, log),
    h("section", { "aria-labelledby": "h-changes" }, h("h2", { id: "h-changes" }, "Changes"), changesEl),
  );

  function renderStatus() {
    const s = status.sandbox;
    replace(badge, stateBadge(s.state));
    root.dataset.state = s.state;
    replace(errorSlot, s.error ? errorBox(s.error) : null);
    replace(
      facts,
      dl([
        ["Repository", h("code", {}, s.repo)],
        ["Provider", s.provider],
        ["Model", s.model || "default"],
        ["Role", s.role],
        ["Created", h("time", { datetime: s.created_at }, `${age(s.created_at)}`)],
        ["Prompt", s.prompt],
        ["Session", s.session_id ? h("code", {}, s.session_id) : null],
        ["Branch", s.branch ? h("code", {}, s.branch) : null],
      ]),
    );
    const g = status.gateway_usage;
    replace(
      usage,
      dl([
        ["Tokens (agent's report)", `${tokens(s.usage)} (${s.usage.input} in, ${s.usage.output} out)`],
        ["Cost", cost(s.usage)],
        ["Model requests (metered)", `${g.requests} (${g.errors} failed)`],
        ["Tokens (metered)", `${g.input} in, ${g.output} out`],
        ["Changed files", String(status.changed_files.length)],
      ]),
    );
    const budget = status.budget;
    if (budget && budget.lines.length) {
      usage.append(
        h("h3", {}, "Budgets"),
        h(
          "ul",
          { class: "budgets" },
          budget.lines.map((line) => {
            const share = line.limit > 0 ? Math.min(1, line.spent / line.limit) : 1;
            const label = `${line.scope} ${line.budget.replace("_", " ")}`;
            return h(
              "li",
              { class: share >= 1 ? "spent" : share >= 0.8 ? "warn" : "" },
              h("span", {}, `${label}: ${figure(line.budget, line.spent)} of ${figure(line.budget, line.limit)}`),
              h("meter", { min: 0, max: 1, low: 0.8, high: 0.99, optimum: 0, value: share.toFixed(3), "aria-label": label }),
            );
          }),
        ),
      );
    }
    const eg = status.egress;
    if (eg && eg.allowed + eg.denied > 0) {
      usage.append(dl([["Network (egress)", `${eg.allowed} allowed, ${eg.denied} denied; ${eg.bytes_up.toLocaleString("en")} bytes up, ${eg.bytes_down.toLocaleString("en")} down`]]));
    }
    const l = status.lease;
    const w = status.warm_server;
    replace(
      lease,
      l
        ? dl([
            ["Held by", `${l.operation} (${l.holder})`],
            ["Expires", h("time", { datetime: l.expires_at }, new Date(l.expires_at).toLocaleTimeString("en-GB"))],
          ])
        : h("p", { class: "muted" }, status.supervisor_lost ? "Its supervisor was lost." : "No lease: nothing works on it now."),
      w
        ? dl([
            ["Warm server", `pid ${w.monitor.pid}, booted in ${duration(w.boot_ms)}`],
            ["Stops", `after ${w.idle_secs} s idle (idle since ${new Date(w.idle_since).toLocaleTimeString("en-GB")})`],
          ])
        : h("p", { class: "muted" }, "No warm OpenCode server."),
    );
    const idle = IDLE.has(s.state);
    sendBtn.disabled = s.state !== "completed";
    followUp.disabled = s.state !== "completed";
    exportBtn.disabled = !(s.state === "completed" || s.state === "error");
    patchBtn.disabled = !idle || s.state === "destroyed";
    bundleBtn.disabled = !s.exported_at || s.state === "destroyed";
    cancelBtn.disabled = !(s.state === "running" || s.state === "queued");
    teardownBtn.disabled = s.state === "destroyed" || s.state === "tearing_down";
    if (idle && s.state !== "destroyed" && changesFor !== s.updated_at) {
      changesFor = s.updated_at;
      loadChanges();
    } else if (!idle) {
      changesFor = null;
      replace(changesEl, h("p", { class: "muted" }, "The agent is working: its changes show when it stops."));
    } else if (s.state === "destroyed" && !changes) {
      replace(changesEl, h("p", { class: "muted" }, s.branch ? `Torn down; its work is on ${s.branch}.` : "Torn down."));
    }
  }

  async function loadChanges() {
    try {
      const { changes: c } = await get(sandboxPath(name, "/changes"));
      if (stopped) return;
      changes = c;
      replace(
        changesEl,
        c.files.length === 0
          ? h("p", { class: "empty" }, "No changes.")
          : [
              h("p", {}, `${c.files.length} file${c.files.length === 1 ? "" : "s"} changed:`),
              h("ul", { class: "changed" }, c.files.map((f) => h("li", {}, h("span", { class: `change change-${f.kind}` }, f.kind), " ", h("code", {}, f.path)))),
              renderChanges(c),
            ],
      );
    } catch (e) {
      if (!stopped) replace(changesEl, errorBox(e));
    }
  }

  function renderPhases() {
    const list = phasesOf(records);
    if (list.length === 0) {
      replace(phases, h("p", { class: "muted" }, "No lifecycle events yet."));
      return;
    }
    const now = Date.now();
    const rows = list.map((p) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, p.name.replace("_", " ")),
        h("td", { class: "num" }, p.ms === null ? (BUSY.has(p.name) ? `${duration(now - p.start)}…` : "–") : duration(p.ms)),
        h("td", {}, p.openCodeReadyMs !== undefined ? `OpenCode's first step after ${duration(p.openCodeReadyMs)}` : ""),
      ),
    );
    replace(
      phases,
      h("table", { class: "phases" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Phase"), h("th", { scope: "col" }, "Took"), h("th", { scope: "col" }, "Notes"))), h("tbody", {}, rows)),
    );
  }

  function showRunEnd(end) {
    if (!end) return;
    const s = end.summary;
    if (s && s.success) {
      const p = s.phases || {};
      const timings = [
        ["sandbox created", p.sandbox_create_ms], ["synced in", p.sync_in_ms], ["gateway up", p.gateway_ms],
        ["OpenCode ready", p.opencode_ready_ms], ["agent", p.agent_ms], ["export", p.export_ms], ["teardown", p.teardown_ms],
      ].filter(([, ms]) => typeof ms === "number");
      replace(
        runEnd,
        h(
          "div",
          { class: "notice" },
          h("p", {}, h("strong", {}, "The run finished"), s.branch ? [": its work is on ", h("code", {}, s.branch)] : ": no changes", `, in ${duration(s.duration_ms)}.`),
          timings.length ? h("p", { class: "muted" }, timings.map(([k, ms]) => `${k} ${duration(ms)}`).join(" · ")) : null,
        ),
      );
    } else {
      const error = (s && s.error) || end.error;
      if (error) replace(runEnd, h("div", {}, h("p", {}, h("strong", {}, "The run failed.")), errorBox(error)));
    }
  }
  showRunEnd(runs.get(name));
  const offRun = onRunEnd((n, end) => n === name && showRunEnd(end));

  // Several events in a burst (a run's end) cost one status read.
  let soon = null;
  function refreshSoon() {
    clearTimeout(soon);
    soon = setTimeout(refreshStatus, 150);
  }

  async function refreshStatus() {
    clearTimeout(timer);
    try {
      status = await get(sandboxPath(name, "/status"));
      if (stopped) return;
      renderStatus();
      renderApproval();
      renderPhases();
    } catch (e) {
      if (stopped) return;
      if (e.status === 404) {
        replace(errorSlot, errorBox(e));
      }
    }
    if (!stopped) timer = setTimeout(refreshStatus, STATUS_REFRESH_MS);
  }
  refreshStatus();

  const stopFollowing = follow(name, {
    onRecord(record) {
      records.push(record);
      const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.append(eventItem(record));
      if (stick) log.scrollTop = log.scrollHeight;
      if (REFRESH_ON.has(record.type)) refreshSoon();
      if (record.type === "state_changed" || record.type === "step_start") renderPhases();
    },
    onState(state) {
      streamState.textContent =
        state === "live" ? "Live." : state === "reconnecting" ? "Connection lost: reconnecting (no event is missed)…" : "The stream ended.";
      streamState.dataset.state = state;
    },
    onError(e) {
      replace(streamState, errorBox(e));
    },
  });

  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(soon);
    stopFollowing();
    offRun();
  };
}
