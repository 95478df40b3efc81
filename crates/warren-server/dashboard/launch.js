// A new run (the one-shot `warren run`: sandbox, agent, export, teardown) or launch (a
// long-lived sandbox that takes follow-ups), from a repository on the server's host or a git URL.

import { post, request, ndjson } from "./api.js";
import { h, replace, field, outcomeSlot, act } from "./ui.js";

/** One-shot runs this page started: their summary (or error) once their stream ends. */
export const runs = new Map();
const runListeners = new Set();
export function onRunEnd(listener) {
  runListeners.add(listener);
  return () => runListeners.delete(listener);
}

/** Reads a `POST /v1/runs` stream to its end; answers the sandbox name once the first event names it. */
function readRun(response) {
  return new Promise((resolveName, rejectName) => {
    let name = null;
    (async () => {
      let end = null;
      try {
        for await (const record of ndjson(response)) {
          if (record.summary || record.error) {
            end = record;
          } else if (!name && record.sandbox) {
            name = record.sandbox;
            resolveName(name);
          }
        }
      } catch (e) {
        end = end || { error: { reason_code: "server_unreachable", message: `the run's stream broke: ${e.message}`, hint: "the run goes on on the server; its page follows it" } };
      }
      if (!name) {
        rejectName(Object.assign(new Error(end && end.error ? end.error.message : "the run ended before it started"), (end && end.error) || {}));
        return;
      }
      runs.set(name, end);
      for (const l of runListeners) l(name, end);
    })();
  });
}

const BUDGET_KEYS = new Set(["tokens", "input_tokens", "output_tokens", "cost", "requests", "time"]);

/** `tokens=200000, cost=2.5` as the API's budget object; a bad entry is an error at the form. */
function parseBudget(text) {
  const budget = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [key, value] = part.split("=").map((x) => x.trim());
    const number = Number(value);
    if (!BUDGET_KEYS.has(key) || value === undefined || value === "" || !Number.isFinite(number) || number < 0) {
      throw Object.assign(new Error(`the budget entry "${part}" is not KEY=NUMBER`), {
        reason_code: "invalid_argument",
        hint: `keys: ${[...BUDGET_KEYS].join(", ")}; cost in US dollars, time in seconds`,
      });
    }
    budget[key] = key === "cost" ? number : Math.round(number);
  }
  return budget;
}

export function launchView(root, navigate) {
  const mode = (value, label, help, checked) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name: "mode", value, checked }),
      h("span", {}, h("strong", {}, label), h("span", { class: "help" }, help)),
    );
  const repository = h("input", { name: "repository", required: true, autocomplete: "off", spellcheck: "false" });
  const prompt = h("textarea", { name: "prompt", rows: 5 });
  const name = h("input", { name: "name", autocomplete: "off", spellcheck: "false", pattern: "[a-z0-9][a-z0-9-]*" });
  const model = h("input", { name: "model", autocomplete: "off", spellcheck: "false" });
  const role = h("input", { name: "role", autocomplete: "off", spellcheck: "false" });
  const askBash = h("input", { name: "ask-bash", autocomplete: "off", spellcheck: "false" });
  const allow = h("input", { name: "allow", autocomplete: "off", spellcheck: "false" });
  const budget = h("input", { name: "budget", autocomplete: "off", spellcheck: "false" });
  const submit = h("button", { type: "submit" }, "Start");
  const slot = outcomeSlot();

  const form = h(
    "form",
    { class: "launch", novalidate: true },
    h(
      "fieldset",
      {},
      h("legend", {}, "What to start"),
      mode("run", "One-shot run", "runs the prompt, exports the work as a branch, tears the sandbox down", true),
      mode("launch", "Launch", "a sandbox that stays for follow-up prompts, exports and teardown by hand", false),
    ),
    field("Repository", repository, "an absolute path on the server's host, or a git URL (https://, ssh://, git://)"),
    field("Prompt", prompt, "what the agent should do (a launch may start without one)"),
    field("Name", name, "lowercase letters, digits and dashes; a run picks one when empty"),
    field("Model", model, "provider/model as in the server's config; empty for the default"),
    field("Role", role, "a role from the server's config; empty for none"),
    field("Ask before running", askBash, "bash commands the agent must ask you for, comma-separated patterns such as git push*, rm -rf *"),
    field("Network allow-list", allow, "hosts the sandbox may reach through the egress proxy, comma-separated (registry.npmjs.org, *.pypi.org:443); empty: the model only"),
    field("Budget", budget, "spend limits, e.g. tokens=200000, cost=2.5, requests=40, time=1800 (seconds); empty: the server's"),
    h("div", { class: "actions" }, submit),
    slot.el,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chosen = form.querySelector("input[name=mode]:checked").value;
    const body = { repository: repository.value.trim() };
    if (prompt.value.trim()) body.prompt = prompt.value;
    if (name.value.trim()) body.name = name.value.trim();
    if (model.value.trim()) body.model = model.value.trim();
    if (role.value.trim()) body.role = role.value.trim();
    const ask = askBash.value.split(",").map((p) => p.trim()).filter(Boolean);
    if (ask.length) body.approvals = { bash: ask };
    const hosts = allow.value.split(",").map((p) => p.trim()).filter(Boolean);
    if (hosts.length) body.allow = hosts;
    act(submit, slot, async () => {
      if (budget.value.trim()) body.budget = parseBudget(budget.value);
      if (chosen === "launch") {
        if (!body.name) {
          throw Object.assign(new Error("a launch needs a name"), {
            reason_code: "invalid_argument",
            hint: "type a name such as fix-login",
          });
        }
        const { sandbox } = await post("/v1/sandboxes", body);
        navigate(`#/sandbox/${encodeURIComponent(sandbox.name)}`);
      } else {
        const response = await request("POST", "/v1/runs", { body, raw: true });
        const started = await readRun(response);
        navigate(`#/sandbox/${encodeURIComponent(started)}`);
      }
    });
  });
  replace(root, h("h1", {}, "New run"), form);
  repository.focus();
  return () => {};
}
