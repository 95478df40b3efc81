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
    act(submit, slot, async () => {
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
