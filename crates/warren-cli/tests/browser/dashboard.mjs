// The dashboard in a real browser: Debian's Chromium driven by Playwright against the real
// `warren serve` that crates/warren-cli/tests/suite/dashboard.rs started (real OpenCode, the
// scripted model). That test reads this script's stdout: a `STOP` line asks it to stop the
// server (it answers `STOPPED` on stdin), a `START` line to start it again on the same port
// (`STARTED`). Each step is a `STEP` line; the last line is `PASS` or `FAIL ...`.
//
// env: WARREN_URL, WARREN_TOKEN, WARREN_REPO, WARREN_SHOTS (where screenshots go),
//      CHROMIUM (default /usr/bin/chromium)

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const base = process.env.WARREN_URL;
const goodToken = process.env.WARREN_TOKEN;
const repo = process.env.WARREN_REPO;
const shots = process.env.WARREN_SHOTS;
mkdirSync(shots, { recursive: true });

const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function ask(command, answer) {
  console.log(command);
  const { value } = await lines.next();
  assert.equal(value, answer);
}

const step = (what) => console.log(`STEP ${what}`);
const LONG = { timeout: 120_000 };

const profile = mkdtempSync(join(tmpdir(), "warren-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
  ],
  viewport: { width: 1280, height: 900 },
  acceptDownloads: true,
});
const page = context.pages()[0] || (await context.newPage());
const consoleErrors = [];
page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
page.on("pageerror", (e) => consoleErrors.push(String(e)));
const offOrigin = [];
page.on("request", (r) => !r.url().startsWith(base) && !r.url().startsWith("blob:") && !r.url().startsWith("data:") && offOrigin.push(r.url()));

/** Every form control has a name a screen reader reads out; every button has a name. */
async function assertLabelled(where) {
  const unlabelled = await page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
      if (el.hidden || el.closest("[hidden]")) continue;
      const named = (el.labels && el.labels.length) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
      if (!named) out.push(el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll("button, a[href]")) {
      if (el.hidden || el.closest("[hidden]")) continue;
      if (!(el.textContent.trim() || el.getAttribute("aria-label"))) out.push(el.outerHTML.slice(0, 80));
    }
    return out;
  });
  assert.deepEqual(unlabelled, [], `unlabelled controls on ${where}`);
}

/** The events list holds each seq once, in order, from 1: no gap, no duplicate. */
async function assertGapless() {
  const seqs = await page.locator("ol.events li").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  assert.ok(seqs.length > 0, "events are shown");
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "events in order from 1, without a gap or a duplicate");
  return seqs.length;
}

async function noHorizontalScroll(where) {
  const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scroll <= width, `${where} scrolls sideways on a narrow window (${scroll} > ${width})`);
}

try {
  step("sign in: a wrong token is refused next to the form, and kept nowhere");
  await page.goto(base);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  // The token field has focus: a keyboard user types at once, and Enter submits.
  await page.keyboard.type("not-a-token");
  await page.keyboard.press("Enter");
  const refusal = page.locator("form.sign-in .error");
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /unauthorized/);
  assert.match(await refusal.textContent(), /Hint:/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("warren.token")), null);
  await assertLabelled("the sign-in page");

  step("sign in with the right token: the empty list");
  await page.getByLabel("Token", { exact: true }).fill(goodToken);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
  await page.getByText("No sandboxes yet").waitFor();
  assert.ok(!page.url().includes(goodToken), "the token is never in the address");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("warren.token")), goodToken);

  step("launch: a bad repository is refused beside the form with its hint, and creates nothing");
  await page.getByRole("link", { name: "New run" }).first().click();
  await page.getByRole("heading", { name: "New run" }).waitFor();
  await assertLabelled("the new-run page");
  await page.getByRole("radio", { name: /^Launch/ }).check();
  await page.getByLabel("Repository", { exact: true }).fill("relative/path");
  await page.getByLabel("Prompt", { exact: true }).fill("build the greeter");
  await page.getByLabel("Name", { exact: true }).fill("dash");
  await page.getByLabel("Ask before running", { exact: true }).fill("echo ok*");
  await page.getByLabel("Budget", { exact: true }).fill("requests=abc");
  await page.getByRole("button", { name: "Start" }).click();
  const launchError = page.locator("form.launch .error");
  await launchError.waitFor();
  assert.match(await launchError.textContent(), /invalid argument/);
  assert.match(await launchError.textContent(), /Hint:/);

  step("a bad budget is refused at the form; then the launch for real: events arriving live");
  await page.getByLabel("Repository", { exact: true }).fill(repo);
  await page.getByRole("button", { name: "Start" }).click();
  const budgetError = page.locator("form.launch .error", { hasText: "budget entry" });
  await budgetError.waitFor();
  assert.match(await budgetError.textContent(), /Hint:/);
  await page.getByLabel("Budget", { exact: true }).fill("requests=100, cost=5");
  await page.getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/#\/sandbox\/dash$/, LONG);
  await page.getByRole("heading", { name: "dash", exact: true }).waitFor();
  // The agent's bash call sleeps, so the page sees the run go on and then end, without a reload.
  await page.locator("#main[data-state=running]").waitFor(LONG);
  await page.locator("ol.events li.ev-tool_use", { hasText: "bash" }).first().waitFor(LONG);
  await page.locator("#main[data-state=completed]").waitFor(LONG);
  await page.locator("ol.events li.ev-step_finish").first().waitFor(LONG);
  await page.locator("ol.events li.ev-text", { hasText: "greeter done" }).waitFor(LONG);
  await assertGapless();
  // The launch's budget, with what the gateway metered against it.
  const budgets = page.locator("ul.budgets li");
  await budgets.first().waitFor(LONG);
  const lines = await budgets.allTextContents();
  assert.ok(lines.some((l) => /sandbox requests: \d+ of 100/.test(l)), `budget lines: ${lines}`);
  assert.ok(lines.some((l) => /sandbox cost: \$[\d.]+ of \$5\.00/.test(l)), `budget lines: ${lines}`);
  const phases = await page.locator("section[aria-labelledby=h-phases] tbody th").allTextContents();
  assert.ok(phases.includes("provisioning") && phases.includes("running"), `phases: ${phases}`);
  await assertLabelled("the sandbox page");

  step("the diff: the agent's file with syntax colour; binary and symlink marked");
  const greet = page.locator('section.diff-file[data-path="src/greet.rs"]');
  await greet.waitFor(LONG);
  assert.match(await greet.locator("h3").textContent(), /added/);
  assert.match(await greet.locator("tr.d-add").first().textContent(), /pub fn greet/);
  assert.ok((await greet.locator(".hljs-keyword").count()) > 0, "Rust keywords are coloured");
  await page.locator('section.diff-file[data-path="blob.bin"] .binary').waitFor();
  await page.locator('section.diff-file[data-path="link.rs"] .symlink').waitFor();
  await page.screenshot({ path: join(shots, "sandbox.png"), fullPage: true });

  step("teardown asks first, naming the unexported work it would discard; cancel keeps it");
  await page.getByRole("button", { name: "Tear down…" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  const text = await dialog.textContent();
  assert.match(text, /not been exported and would be discarded/);
  assert.match(text, /src\/greet\.rs/);
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
  assert.equal(await page.locator("#main").getAttribute("data-state"), "completed");

  step("the list: the sandbox with its state, live");
  await page.getByRole("link", { name: "← Sandboxes" }).click();
  const row = page.locator('tr[data-name="dash"]');
  await row.waitFor();
  assert.equal(await row.getAttribute("data-state"), "completed");
  assert.match(await row.textContent(), /local/);
  await row.locator('td[data-label="Changed files"]', { hasText: "3" }).waitFor(LONG);
  // Another client launches a sandbox: its row appears and moves on without a reload.
  const reloads = [];
  page.on("framenavigated", (f) => f === page.mainFrame() && reloads.push(f.url()));
  const other = await page.request.post(`${base}/v1/sandboxes`, {
    headers: { authorization: `Bearer ${goodToken}` },
    data: { repository: repo, name: "dash-other" },
  });
  assert.equal(other.status(), 201, await other.text());
  await page.locator('tr[data-name="dash-other"][data-state=completed]').waitFor(LONG);
  assert.deepEqual(reloads, [], "the list updated in place");
  const order = await page.locator("tr[data-name]").evaluateAll((rows) => rows.map((r) => r.dataset.name));
  assert.deepEqual(order, ["dash-other", "dash"], "newest first");
  await page.screenshot({ path: join(shots, "sandboxes.png") });
  await page.getByLabel("State", { exact: true }).selectOption("running");
  await page.getByText("No sandbox is running.").waitFor();
  await page.getByLabel("State", { exact: true }).selectOption("");
  await row.waitFor();

  step("the server stops while the page is open: the page says so, then recovers");
  await page.getByRole("link", { name: "dash", exact: true }).click();
  await page.locator(".stream-state[data-state=live]").waitFor(LONG);
  const before = await assertGapless();
  await ask("STOP", "STOPPED");
  await page.locator("#connection[data-state=down]").waitFor(LONG);
  await page.locator(".stream-state[data-state=reconnecting]").waitFor(LONG);
  await page.screenshot({ path: join(shots, "server-down.png") });
  await ask("START", "STARTED");
  await page.locator("#connection[data-state=up]").waitFor(LONG);
  await page.locator(".stream-state[data-state=live]").waitFor(LONG);
  assert.equal(await assertGapless(), before, "nothing doubled by the reconnect");

  step("a follow-up: its events arrive on the resumed stream, with no gap");
  await page.getByLabel("Follow-up prompt", { exact: true }).fill("now the farewell");
  await page.getByRole("button", { name: "Send follow-up" }).click();

  step("the agent asks before a command the launch named: the page shows it; approve lets it run");
  const approval = page.getByRole("region", { name: "The agent asks for approval" });
  await approval.waitFor(LONG);
  assert.match(await approval.textContent(), /echo ok > approved\.txt/);
  await page.screenshot({ path: join(shots, "approval.png") });
  await approval.getByRole("button", { name: "Approve" }).click();
  await page.locator("ol.events li.ev-approval_decided", { hasText: "approved" }).waitFor(LONG);
  await approval.waitFor({ state: "detached", timeout: 30_000 });
  await page.locator("ol.events li.ev-text", { hasText: "farewell done" }).waitFor(LONG);
  await page.locator("#main[data-state=completed]").waitFor(LONG);
  const after = await assertGapless();
  assert.ok(after > before, "the follow-up's events were added");
  await page.locator('section.diff-file[data-path="src/farewell.rs"]').waitFor(LONG);
  await page.locator('section.diff-file[data-path="approved.txt"]').waitFor(LONG);

  step("download the patch: the agent's text changes");
  const downloading = page.waitForEvent("download");
  await page.getByRole("button", { name: "Download patch" }).click();
  const patch = readFileSync(await (await downloading).path(), "utf8");
  assert.match(patch, /diff --git a\/src\/greet\.rs b\/src\/greet\.rs/);
  assert.match(patch, /\+pub fn farewell/);

  step("export to a named branch, then an existing one is refused beside the button");
  await page.getByLabel("Branch", { exact: true }).fill("dash-export");
  await page.getByRole("button", { name: "Export to branch" }).click();
  await page.locator("form[aria-label=Export] .note", { hasText: "Exported to dash-export" }).waitFor(LONG);
  await page.getByRole("button", { name: "Export to branch" }).click();
  const exportError = page.locator("form[aria-label=Export] .error");
  await exportError.waitFor(LONG);
  assert.match(await exportError.textContent(), /branch exists/);

  step("dark scheme and a narrow window");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: join(shots, "sandbox-dark.png"), fullPage: true });
  await page.setViewportSize({ width: 375, height: 800 });
  await noHorizontalScroll("the sandbox page");
  await page.getByRole("link", { name: "← Sandboxes" }).click();
  await page.locator('tr[data-name="dash"]').waitFor();
  await noHorizontalScroll("the list");
  await page.screenshot({ path: join(shots, "sandboxes-narrow-dark.png") });
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 1280, height: 900 });

  step("tear down after the export: nothing unexported, confirmed, destroyed");
  await page.getByRole("link", { name: "dash", exact: true }).click();
  await page.getByRole("button", { name: "Tear down…" }).click();
  await page.getByRole("dialog").waitFor();
  assert.match(await page.getByRole("dialog").textContent(), /exported/);
  await page.getByRole("dialog").getByRole("button", { name: "Tear down" }).click();
  await page.locator("#main[data-state=destroyed]").waitFor(LONG);

  const gone = await page.request.delete(`${base}/v1/sandboxes/dash-other`, { headers: { authorization: `Bearer ${goodToken}` } });
  assert.equal(gone.status(), 200, await gone.text());

  step("a one-shot run from the form: it exports and tears down on its own");
  await page.getByRole("link", { name: "New run" }).first().click();
  await page.getByLabel("Repository", { exact: true }).fill(repo);
  await page.getByLabel("Prompt", { exact: true }).fill("a quick one");
  await page.getByLabel("Name", { exact: true }).fill("dash-run");
  await page.getByRole("button", { name: "Start" }).click();
  await page.waitForURL(/#\/sandbox\/dash-run$/, LONG);
  await page.getByText("The run finished").waitFor(LONG);
  assert.match(await page.locator(".notice").textContent(), /warren\/dash-run/);
  await page.locator("#main[data-state=destroyed]").waitFor(LONG);

  step("sign out: the token is gone from the tab");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("warren.token")), null);

  assert.deepEqual(offOrigin, [], "the page fetched nothing from another origin");
  // The restart's refused connections are the only errors a console may show.
  const unexpected = consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|Failed to fetch|network error|ERR_INCOMPLETE_CHUNKED_ENCODING|Failed to load resource/.test(e));
  assert.deepEqual(unexpected, [], "no script error on the page");
  console.log("PASS");
} catch (e) {
  await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  console.log(`FAIL ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  stdin.close();
}
