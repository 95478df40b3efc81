// One event record as a readable line: the agent's text, its tool calls with their titles and
// outcomes, step finishes with tokens, warren's own lifecycle events, errors with their hint.

import { h, duration } from "./ui.js";

/** A budget figure as a person reads it: dollars, seconds or a count. */
export function figure(kind, value) {
  if (kind === "cost") return `$${Number(value).toFixed(value < 0.01 ? 4 : 2)}`;
  if (kind === "time") return duration(value * 1000);
  return Math.round(value).toLocaleString("en");
}

function limitText(limits) {
  return Object.entries(limits)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k.replace("_", " ")} ${figure(k, v)}`)
    .join(", ");
}

function time(record) {
  const t = new Date(record.at);
  return h("time", { datetime: record.at, class: "at" }, t.toLocaleTimeString("en-GB"));
}

function body(e) {
  switch (e.type) {
    case "state_changed":
      return [h("span", { class: "kind" }, "state"), ` → ${e.state}`, e.detail ? ` (${e.detail})` : ""];
    case "synced_in":
      return [
        h("span", { class: "kind" }, "synced in"),
        ` ${e.files} files, ${e.bytes.toLocaleString("en")} bytes${e.dirty ? ", with uncommitted changes" : ""}`,
        e.skipped && e.skipped.length ? `; skipped ${e.skipped.join(", ")}` : "",
      ];
    case "resynced":
      return [h("span", { class: "kind" }, "resynced"), ` ${e.updated} updated, ${e.deleted} deleted`];
    case "step_start":
      return [h("span", { class: "kind" }, "step"), " started"];
    case "text":
      return [h("span", { class: "kind" }, "agent"), " ", h("span", { class: "text" }, e.text)];
    case "reasoning":
      return [h("span", { class: "kind" }, "thinking"), " ", h("span", { class: "text reasoning" }, e.text)];
    case "tool_use": {
      const input = e.input || {};
      const what = e.title || input.command || input.filePath || input.path || "";
      const detail = e.error || e.output;
      return [
        h("span", { class: "kind" }, `tool ${e.tool}`),
        " ",
        h("span", { class: `tool-status tool-${e.status}` }, e.status),
        what ? [" ", h("code", {}, what)] : "",
        detail ? h("details", {}, h("summary", {}, e.error ? "error" : "output"), h("pre", {}, detail)) : "",
      ];
    }
    case "step_finish": {
      const u = e.usage || {};
      return [
        h("span", { class: "kind" }, "step"),
        ` finished (${e.reason}): ${u.input || 0} in, ${u.output || 0} out`,
        u.cost ? `, $${u.cost.toFixed(4)}` : "",
      ];
    }
    case "agent_error":
      return [h("span", { class: "kind bad" }, "agent error"), ` ${e.name}: ${e.message}`];
    case "gateway":
      return [h("span", { class: "kind" }, "gateway"), ` ${e.message}`];
    case "model_request":
      return [
        h("span", { class: "kind" }, "model request"),
        ` ${e.endpoint}${e.model ? ` (${e.model})` : ""} → ${e.status} in ${duration(e.latency_ms)}`,
        e.input_tokens !== undefined ? `, ${e.input_tokens} in / ${e.output_tokens ?? 0} out` : "",
        e.error ? `: ${e.error}` : "",
      ];
    case "retrying":
      return [
        h("span", { class: "kind bad" }, "retrying"),
        ` attempt ${e.attempt}/${e.max_attempts} in ${duration(e.delay_ms)}: ${e.reason_code}: ${e.message}`,
      ];
    case "queued":
      return [h("span", { class: "kind" }, "queued"), ` for pool ${e.pool}, position ${e.position}`];
    case "outcome":
      return [h("span", { class: "kind" }, "outcome"), ` ${e.outcome}: ${e.summary}`];
    case "exported":
      return [
        h("span", { class: "kind good" }, "exported"),
        ` to `,
        h("code", {}, e.branch),
        ` (${e.files_changed} files${e.commit ? `, ${e.commit.slice(0, 12)}` : ""})`,
      ];
    case "finished":
      if (e.success) return [h("span", { class: "kind good" }, "finished"), " successfully"];
      return [
        h("span", { class: "kind bad" }, "finished"),
        e.error ? ` with ${e.error.reason_code}: ${e.error.message}` : " with an error",
        e.error && e.error.hint ? h("span", { class: "hint" }, ` Hint: ${e.error.hint}`) : "",
      ];
    case "approval_requested":
      return [
        h("span", { class: "kind bad" }, "asks approval"),
        ` for ${e.permission}: `,
        h("code", {}, e.title || (e.patterns || []).join(", ")),
        ` (denied after ${e.timeout_secs} s unanswered)`,
      ];
    case "approval_answered":
      return [h("span", { class: "kind" }, "answered"), ` ${e.decision}`, e.reason ? `: ${e.reason}` : ""];
    case "approval_decided":
      return [
        h("span", { class: `kind ${e.decision === "approve" ? "good" : "bad"}` }, e.decision === "approve" ? "approved" : "denied"),
        e.by === "timeout" ? " (nobody answered in time)" : e.by === "run_ended" ? " (the run ended first)" : "",
        e.reason ? `: ${e.reason}` : "",
      ];
    case "egress":
      if (e.decision === "allowed") {
        return [
          h("span", { class: "kind" }, "network"),
          ` ${e.method} ${e.host}:${e.port} allowed by `,
          h("code", {}, e.rule || "?"),
          `: ${e.status}, ${e.bytes_up} bytes up, ${e.bytes_down} down in ${duration(e.duration_ms)}`,
          e.reason ? ` (${e.reason})` : "",
        ];
      }
      return [h("span", { class: "kind bad" }, "network denied"), ` ${e.method} ${e.host}:${e.port}: ${e.reason || "refused"}`];
    case "budget": {
      const limits = [e.run_limits, e.sandbox_limits].filter((l) => l && Object.values(l).some((v) => v !== null && v !== undefined));
      return [h("span", { class: "kind" }, "budget"), limits.length ? ` ${limits.map(limitText).join("; ")}` : " none"];
    }
    case "budget_warning":
      return [h("span", { class: "kind bad" }, "budget at 80%"), ` ${e.scope} ${e.budget.replace("_", " ")}: ${figure(e.budget, e.spent)} of ${figure(e.budget, e.limit)}`];
    case "budget_exceeded":
      return [h("span", { class: "kind bad" }, "budget spent"), ` ${e.scope} ${e.budget.replace("_", " ")}: ${figure(e.budget, e.spent)} of ${figure(e.budget, e.limit)}; the agent was stopped`];
    default: {
      // An event this page does not know (a newer server's): shown as its JSON, never dropped.
      const { seq, at, sandbox, ...rest } = e;
      return [h("span", { class: "kind" }, e.type || "event"), " ", h("code", {}, JSON.stringify(rest))];
    }
  }
}

/** A list item for one record; `data-seq` lets a reader (or a test) check the order. */
export function eventItem(record) {
  return h("li", { class: `event ev-${record.type}`, "data-seq": record.seq }, time(record), " ", body(record));
}

/**
 * The boot phases and their timings, from the recorded events: each lifecycle state's time,
 * then the agent's first step (OpenCode ready) inside `running`.
 */
export function phasesOf(records) {
  const phases = [];
  let open = null;
  let firstStep = null;
  for (const r of records) {
    if (r.type === "state_changed") {
      const at = Date.parse(r.at);
      if (open) open.ms = at - open.start;
      open = { name: r.state, start: at, ms: null };
      phases.push(open);
    } else if (r.type === "step_start" && firstStep === null && open && open.name === "running") {
      firstStep = Date.parse(r.at) - open.start;
      open.openCodeReadyMs = firstStep;
    }
  }
  return phases;
}
