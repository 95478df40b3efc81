// The agent's changes, file by file: git's unified diff split per file, each line coloured by
// highlight.js for the file's language (by extension), added and removed lines marked in text
// as well as colour. Binary files and symlinks are shown as such, never dumped.

import { h } from "./ui.js";

/** Splits git's unified diff into files: `{path, header[], lines: [{kind, text, old, new}]}`. */
export function parseDiff(text) {
  const files = [];
  let file = null;
  let oldNo = 0;
  let newNo = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("diff --git ")) {
      const m = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
      file = { path: m ? m[2] : line.slice(11), header: [], lines: [], binary: false };
      files.push(file);
      continue;
    }
    if (!file) continue;
    if (line.startsWith("@@")) {
      const m = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$/.exec(line);
      if (m) {
        oldNo = Number(m[1]);
        newNo = Number(m[2]);
      }
      file.lines.push({ kind: "hunk", text: line });
    } else if (file.lines.length === 0) {
      if (line.startsWith("Binary files ")) file.binary = true;
      if (line.startsWith("new file")) file.kind = "added";
      if (line.startsWith("deleted file")) file.kind = "deleted";
      file.header.push(line);
    } else if (line.startsWith("+")) {
      file.lines.push({ kind: "add", text: line.slice(1), new: newNo++ });
    } else if (line.startsWith("-")) {
      file.lines.push({ kind: "del", text: line.slice(1), old: oldNo++ });
    } else if (line.startsWith(" ")) {
      file.lines.push({ kind: "ctx", text: line.slice(1), old: oldNo++, new: newNo++ });
    } else if (line.startsWith("\\")) {
      file.lines.push({ kind: "note", text: line });
    }
  }
  return files;
}

const LANGUAGES = {
  rs: "rust", js: "javascript", mjs: "javascript", cjs: "javascript", ts: "typescript",
  tsx: "typescript", jsx: "javascript", py: "python", rb: "ruby", go: "go", java: "java",
  kt: "kotlin", c: "c", h: "c", cc: "cpp", cpp: "cpp", hpp: "cpp", cs: "csharp", sh: "bash",
  bash: "bash", zsh: "bash", json: "json", toml: "ini", ini: "ini", yaml: "yaml", yml: "yaml",
  md: "markdown", html: "xml", xml: "xml", svg: "xml", css: "css", scss: "scss", sql: "sql",
  php: "php", swift: "swift", lua: "lua", pl: "perl", r: "r", diff: "diff", mk: "makefile",
};

export function languageOf(path) {
  const base = path.split("/").pop();
  if (base === "Makefile") return "makefile";
  if (base === "Dockerfile") return "dockerfile";
  const ext = base.includes(".") ? base.split(".").pop().toLowerCase() : "";
  const lang = LANGUAGES[ext];
  return lang && window.hljs && window.hljs.getLanguage(lang) ? lang : null;
}

function codeCell(text, lang) {
  const code = h("code", {});
  if (lang) {
    // highlight.js escapes the text itself and answers spans of classes: safe as HTML.
    code.innerHTML = window.hljs.highlight(text, { language: lang, ignoreIllegals: true }).value;
  } else {
    code.textContent = text;
  }
  return code;
}

const SIGN = { add: "+", del: "−", ctx: " " };
const SR = { add: "added: ", del: "removed: ", ctx: "" };

function fileTable(file) {
  const lang = languageOf(file.path);
  const rows = file.lines.map((l) => {
    if (l.kind === "hunk" || l.kind === "note") {
      return h("tr", { class: `d-${l.kind}` }, h("td", { colspan: 3 }, h("code", {}, l.text)));
    }
    return h(
      "tr",
      { class: `d-${l.kind}` },
      h("td", { class: "ln", "aria-hidden": "true" }, l.old ?? ""),
      h("td", { class: "ln", "aria-hidden": "true" }, l.new ?? ""),
      h(
        "td",
        { class: "src" },
        h("span", { class: "sign", "aria-hidden": "true" }, SIGN[l.kind]),
        h("span", { class: "sr-only" }, SR[l.kind]),
        codeCell(l.text, lang),
      ),
    );
  });
  return h("div", { class: "diff-scroll" }, h("table", { class: "diff hljs" }, h("tbody", {}, rows)));
}

function kindOf(path, changes) {
  const f = changes.files.find((x) => x.path === path);
  return f ? f.kind : "modified";
}

/** The rendered diff of a `changes` view. */
export function renderChanges(changes) {
  const parsed = parseDiff(changes.diff);
  const binary = new Set(changes.binary);
  const symlinks = new Set(changes.symlinks);
  const sections = [];
  for (const file of parsed) {
    const kind = kindOf(file.path, changes);
    const isBinary = file.binary || binary.has(file.path);
    sections.push(
      h(
        "section",
        { class: "diff-file", "data-path": file.path, "aria-label": `${kind} ${file.path}` },
        h("h3", {}, h("span", { class: `change change-${kind}` }, kind), " ", h("code", {}, file.path)),
        isBinary
          ? h("p", { class: "note binary" }, "Binary file: its content is not shown.")
          : fileTable(file),
      ),
    );
  }
  // Symlinks are left out of the diff, and a binary file may have no diff section of its own.
  const shown = new Set(parsed.map((f) => f.path));
  for (const path of [...symlinks, ...[...binary].filter((p) => !shown.has(p))]) {
    if (shown.has(path)) continue;
    shown.add(path);
    const kind = kindOf(path, changes);
    const what = symlinks.has(path) ? "Symbolic link" : "Binary file";
    sections.push(
      h(
        "section",
        { class: "diff-file", "data-path": path, "aria-label": `${kind} ${path}` },
        h("h3", {}, h("span", { class: `change change-${kind}` }, kind), " ", h("code", {}, path)),
        h("p", { class: `note ${symlinks.has(path) ? "symlink" : "binary"}` }, `${what}: its content is not shown.`),
      ),
    );
  }
  if (changes.truncated) {
    sections.push(h("p", { class: "note" }, "The diff is cut here (too large to show whole); every changed file is listed above."));
  }
  return sections;
}
