// Small DOM helpers shared by the views. Text from the API (prompts, paths, agent output) only
// ever goes into the page as text nodes, never as HTML.

/** `h("p", {class: "x"}, "text", child)`: an element; `on*` attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** "3 min ago", from an RFC 3339 time. */
export function age(iso, now = Date.now()) {
  const secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs} s ago`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ago`;
  return `${Math.floor(secs / 86400)} d ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function tokens(usage) {
  if (!usage) return "–";
  const total = (usage.input || 0) + (usage.output || 0) + (usage.reasoning || 0);
  return total.toLocaleString("en");
}

export function cost(usage) {
  if (!usage || !usage.cost) return "$0";
  return `$${usage.cost < 0.01 ? usage.cost.toFixed(4) : usage.cost.toFixed(2)}`;
}

/** A state as a badge: the text says it, the colour only repeats it. */
export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state.replace("_", " "));
}

/** An API error with its reason code and hint, where the action that caused it is. */
export function errorBox(error, { id } = {}) {
  const code = error.reason_code || "error";
  return h(
    "div",
    { class: "error", role: "alert", id },
    h("p", {}, h("strong", {}, code.replaceAll("_", " ")), ": ", error.message || String(error)),
    error.hint ? h("p", { class: "hint" }, "Hint: ", error.hint) : null,
  );
}

/** A place next to an action where its outcome (an error or a note) appears. */
export function outcomeSlot() {
  const slot = h("div", { class: "outcome", "aria-live": "polite" });
  return {
    el: slot,
    error(e) {
      replace(slot, errorBox(e));
    },
    note(...text) {
      replace(slot, h("p", { class: "note" }, ...text));
    },
    clear() {
      replace(slot);
    },
  };
}

/** Runs `work` with `button` disabled and its outcome in `slot`; answers what `work` answers. */
export async function act(button, slot, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  slot.clear();
  try {
    return await work();
  } catch (e) {
    if (e.name !== "AbortError") slot.error(e);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/**
 * A modal confirmation (a native <dialog>: focus stays inside, Escape cancels). Answers the
 * `value` of the button pressed, or null when cancelled.
 */
export function confirmDialog({ title, body, choices }) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dialog = h(
      "dialog",
      { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      body,
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { value: "", class: "quiet", autofocus: true }, "Cancel"),
        choices.map((c) => h("button", { value: c.value, class: c.danger ? "danger" : "" }, c.label)),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue || null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function field(label, input, help) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  let helpEl = null;
  if (help) {
    helpEl = h("p", { class: "help", id: `${id}-help` }, help);
    input.setAttribute("aria-describedby", helpEl.id);
  }
  return h("div", { class: "field" }, h("label", { for: id }, label), input, helpEl);
}
