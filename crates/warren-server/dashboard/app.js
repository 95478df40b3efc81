// The dashboard's shell: sign-in with a token, the connection indicator (the page says when the
// server stops answering and recovers on its own when it is back), and hash routing between the
// sandboxes list, one sandbox and the new-run form.

import { token, setToken, get, onReachability, onUnauthorized } from "./api.js";
import { h, replace, field, outcomeSlot, act } from "./ui.js";
import { listView } from "./list.js";
import { sandboxView } from "./sandbox.js";
import { launchView } from "./launch.js";

const main = document.getElementById("main");
const connection = document.getElementById("connection");
const signOut = document.getElementById("sign-out");
let leave = () => {};

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function signIn(reason) {
  leave();
  leave = () => {};
  signOut.hidden = true;
  const input = h("input", { type: "password", name: "token", autocomplete: "off", spellcheck: "false", required: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const slot = outcomeSlot();
  if (reason) slot.error(reason);
  const form = h(
    "form",
    { class: "sign-in", "aria-labelledby": "h-sign-in" },
    h("h1", { id: "h-sign-in" }, "Sign in"),
    field("Token", input, "from `warren token create --owner NAME`; kept in this tab only, until you close it or sign out"),
    h("div", { class: "actions" }, submit),
    slot.el,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const candidate = input.value.trim();
    act(submit, slot, async () => {
      if (!candidate) {
        throw Object.assign(new Error("no token given"), { reason_code: "unauthorized", hint: "paste a token made with `warren token create`" });
      }
      // Checked before it is kept: a wrong token never becomes the page's.
      await get("/v1/sandboxes?limit=1", { tokenOverride: candidate });
      setToken(candidate);
      route();
    });
  });
  replace(main, form);
  input.focus();
}

onUnauthorized((error) => {
  setToken(null);
  signIn(error);
});

signOut.addEventListener("click", () => {
  setToken(null);
  signIn(null);
});

// The server answers or not: said in the header, and said again when it is back.
let down = false;
onReachability((ok) => {
  if (!ok && !down) {
    down = true;
    connection.textContent = "The server does not answer: retrying…";
    connection.dataset.state = "down";
  } else if (ok && down) {
    down = false;
    connection.textContent = "Connected again.";
    connection.dataset.state = "up";
    setTimeout(() => {
      if (!down) connection.textContent = "";
    }, 8000);
  }
});

function route() {
  leave();
  leave = () => {};
  if (!token()) {
    signIn(null);
    return;
  }
  signOut.hidden = false;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  let m;
  if ((m = /^\/sandbox\/(.+)$/.exec(path))) {
    leave = sandboxView(main, decodeURIComponent(m[1]), navigate);
    document.title = `${decodeURIComponent(m[1])} · warren`;
  } else if (path === "/new") {
    leave = launchView(main, navigate);
    document.title = "New run · warren";
  } else {
    leave = listView(main, query || "");
    document.title = "Sandboxes · warren";
  }
  // A screen reader lands on the new page's content, as after a full page load.
  if (path !== "/new") main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
route();
