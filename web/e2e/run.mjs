// End-to-end tests of the web UI in Debian's Chromium (playwright-core, headless) against a real
// `dukenet serve` with RouterBench replay agents. Saves a screenshot of every page at desktop
// and phone width under var/screenshots/, runs axe-core on every page (no serious or critical
// violation allowed), and fails on any console error. Prints "N passed, M failed".
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { ADMIN, apiClient, startServer } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const shots = join(root, "var", "screenshots");
mkdirSync(shots, { recursive: true });
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const PASSWORD = "e2e-password-123";
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const REPLAY_MODELS = ["gpt-4-1106-preview", "mistralai/mistral-7b-chat", "zero-one-ai/Yi-34B-Chat"];
// replay agents answer RouterBench prompts with their recorded answers: take real ones. PROMPTS
// (for training) have mixed outcomes; SOLVED ones every replay agent answered correctly, so the
// buyer's task is delivered whichever agent the router draws (a wrong answer fails the task).
const PICK_PROMPTS = `
import json, sys
from collections import Counter
from dukenet.learning.routerbench import load_routerbench
table = load_routerbench("train")
models = json.loads(sys.argv[1])
columns = [table.agents.index(m) for m in models]
count = Counter(table.prompts)
unique = [i for i, p in enumerate(table.prompts) if count[p] == 1]
solved = [table.prompts[i] for i in unique if all(table.success[i, j] for j in columns) and len(table.prompts[i]) < 400]
print(json.dumps({"prompts": [table.prompts[i] for i in unique[:40]], "solved": solved[:5]}))
`;
const { prompts: PROMPTS, solved: SOLVED } = JSON.parse(execFileSync("python", ["-c", PICK_PROMPTS, JSON.stringify(REPLAY_MODELS)], { encoding: "utf8" }));

const started = Date.now();
const results = [];
const axeReport = [];
const consoleErrors = [];
const screenshots = [];

// an OpenAI-compatible endpoint on loopback for the llm agent's test call (the server allows
// 127.0.0.0/8 as an agent network for this run only)
const llmRequests = [];
const llmDouble = createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    llmRequests.push({ path: req.url, body: JSON.parse(body || "{}") });
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ id: "e2e", object: "chat.completion", model: "e2e-model", choices: [{ index: 0, message: { role: "assistant", content: "OK from the e2e double" }, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } }));
  });
});
await new Promise((resolve) => llmDouble.listen(0, "127.0.0.1", resolve));
const llmBaseUrl = `http://127.0.0.1:${llmDouble.address().port}/v1`;

const server = await startServer({ DUKENET_ALLOWED_AGENT_NETWORKS: "127.0.0.0/8" });
const api = apiClient(server.url);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
});

const uid = () => Math.random().toString(36).slice(2, 8);

const openPages = new Set();

async function newPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport, baseURL: server.url, acceptDownloads: true });
  const page = await context.newPage();
  openPages.add(page);
  page.on("close", () => openPages.delete(page));
  page.setDefaultTimeout(60_000);
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    // the browser logs every 4xx/5xx fetch; the app shows those itself (checked by the tests)
    if (text.startsWith("Failed to load resource")) return;
    consoleErrors.push(`${page.url()}: ${text}`);
  });
  page.on("pageerror", (error) => consoleErrors.push(`${page.url()}: ${error.message}`));
  return page;
}

async function login(page, email, password = PASSWORD) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL((url) => !url.pathname.startsWith("/login"));
}

async function registerUi(page, email, role) {
  await page.goto("/register");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByLabel("Display name").fill(email.split("@")[0]);
  await page.getByLabel("I want to").selectOption(role);
  await page.getByRole("button", { name: "Register" }).click();
  await page.getByText(`Account ${email} created`).waitFor();
}

/** Take the agent whose page is open off the market (so later tests' tasks are not routed to it). */
async function disableAgent(page) {
  await page.getByRole("button", { name: "Disable" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Disable" }).click();
  await page.getByRole("button", { name: "Enable" }).waitFor();
}

/** Screenshot `name` at desktop and phone width, and run axe on it. */
async function capture(page, name) {
  // not "networkidle": the live event stream keeps a request open
  await page.waitForLoadState("load");
  await page.waitForTimeout(500);
  await page.addScriptTag({ content: axeSource });
  const axe = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, target: v.nodes[0]?.target?.join(" ") }));
  });
  axeReport.push({ page: name, violations: axe });
  const viewport = page.viewportSize();
  for (const [label, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(250);
    const file = join(shots, `${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    screenshots.push(file);
  }
  await page.setViewportSize(viewport);
}

async function test(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - t0 });
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (error) {
    results.push({ name, ok: false, ms: Date.now() - t0, error: String(error?.stack ?? error) });
    console.log(`FAIL ${name}: ${error?.message ?? error}`);
    // what each open page showed when it failed, then close them: the next test starts clean
    let i = 0;
    for (const page of [...openPages]) {
      const file = join(shots, `FAILED-${results.length}-${i++}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      console.log(`     ${page.url()} -> ${file.slice(root.length + 1)}`);
      await page.context().close().catch(() => {});
    }
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

// the market: replay agents registered by the admin over the API
const adminToken = await api.login(ADMIN.email, ADMIN.password);
for (const model of REPLAY_MODELS) {
  await api.call("POST", "/agents", { token: adminToken, body: { name: model.split("/").pop(), kind: "replay", base_price_sat: 1000, replay: { dataset: "routerbench", model } } });
}

const buyerEmail = `buyer-${uid()}@e2e.example.com`;
const operatorEmail = `operator-${uid()}@e2e.example.com`;
let humanAgentName = `human-${uid()}`;

await test("login page and registration page render", async () => {
  const page = await newPage();
  await page.goto("/login");
  await capture(page, "login");
  await page.goto("/register");
  await capture(page, "register");
  await page.getByRole("button", { name: "Register" }).click();
  await page.getByText("Please fix the fields marked below.").waitFor();
  await page.context().close();
});

await test("buyer registers, is credited by an admin, uploads a file, quotes, creates a task, sees it complete live and accepts it", async () => {
  const buyer = await newPage();
  await registerUi(buyer, buyerEmail, "buyer");
  await login(buyer, buyerEmail);
  await buyer.waitForURL("**/tasks");
  await buyer.getByText("No tasks yet").waitFor();
  await capture(buyer, "tasks-empty");

  const admin = await newPage();
  await login(admin, ADMIN.email, ADMIN.password);
  await admin.waitForURL("**/admin");
  await admin.goto("/admin/users");
  await admin.getByLabel("Search email or name").fill(buyerEmail);
  const row = admin.getByRole("row", { name: new RegExp(buyerEmail) });
  await row.getByRole("button", { name: "Credit" }).click();
  await admin.getByLabel("Amount (sat)").fill("50000000");
  await admin.getByRole("button", { name: `Credit ${buyerEmail}` }).click();
  await admin.getByText("Credited; balance now 50,000,000 sat.").waitFor();
  await capture(admin, "admin-users");
  await admin.context().close();

  await buyer.goto("/wallet");
  await buyer.getByText("50,000,000 sat").first().waitFor();
  await buyer.goto("/tasks/new");
  await buyer.getByLabel("Description").fill(SOLVED[0]);
  await buyer.getByLabel("Complexity (1–10)").fill("2");
  await buyer.getByLabel("Attach files").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("Paris is the capital of France.\n") });
  await buyer.getByText("uploaded").waitFor();
  await buyer.getByRole("button", { name: "Get a quote" }).click();
  await buyer.getByText("Predicted success").waitFor();
  await capture(buyer, "task-new-quote");
  await buyer.getByRole("button", { name: /Confirm and pay/ }).click();
  await buyer.waitForURL(/\/tasks\/[0-9a-f-]{36}$/);
  // the runner delivers it; the page updates from the event stream, no reload
  await buyer.getByRole("button", { name: "Accept and pay" }).waitFor({ timeout: 240_000 });
  await buyer.getByRole("table", { name: "Routing candidates" }).waitFor();
  const download = buyer.waitForEvent("download");
  await buyer.getByRole("button", { name: "Download notes.txt" }).click();
  const saved = await (await download).path();
  expect(readFileSync(saved, "utf8") === "Paris is the capital of France.\n", "the attached file downloads with its bytes");
  await capture(buyer, "task-delivered");
  await buyer.getByRole("button", { name: "Accept and pay" }).click();
  await buyer.getByText("completed").first().waitFor();
  await buyer.getByRole("button", { name: "4 stars" }).click();
  await buyer.getByRole("button", { name: "Save feedback" }).click();
  await buyer.getByText("Thanks: your feedback is saved.").waitFor();
  await capture(buyer, "task-completed");
  await buyer.goto("/tasks");
  await buyer.getByRole("table", { name: "Tasks" }).getByText("completed").waitFor();
  await capture(buyer, "tasks");
  await buyer.goto("/wallet");
  await buyer.getByRole("img", { name: /Spent per day/ }).waitFor();
  await capture(buyer, "wallet");
  await buyer.goto("/profile");
  await capture(buyer, "profile");
  await buyer.context().close();
});

await test("operator creates a human agent; a buyer's task to it is answered from the inbox and rejected", async () => {
  const operator = await newPage();
  await registerUi(operator, operatorEmail, "agent");
  await login(operator, operatorEmail);
  await operator.waitForURL("**/agents");
  await operator.getByLabel("Name").fill(humanAgentName);
  await operator.getByLabel("Base price (sat)").fill("500");
  await operator.getByRole("button", { name: "Create agent" }).click();
  await operator.waitForURL(/\/agents\/[0-9a-f-]{36}$/);
  await operator.getByRole("heading", { name: humanAgentName }).waitFor();

  const buyer = await newPage();
  await login(buyer, buyerEmail);
  await buyer.goto("/tasks/new");
  await buyer.getByLabel("Description").fill("Summarise the plot of Hamlet in two sentences.");
  await buyer.getByLabel("Pin an agent").selectOption({ label: humanAgentName });
  await buyer.getByRole("button", { name: "Get a quote" }).click();
  await buyer.locator("dd", { hasText: humanAgentName }).waitFor();
  await buyer.getByRole("button", { name: /Confirm and pay/ }).click();
  await buyer.waitForURL(/\/tasks\/[0-9a-f-]{36}$/);
  const taskUrl = buyer.url();

  await operator.goto("/inbox");
  await operator.getByText("Summarise the plot of Hamlet").waitFor();
  await operator.getByRole("button", { name: "Claim" }).click();
  await operator.getByLabel("Your answer").fill("A prince avenges his father. Almost everyone dies.");
  await capture(operator, "inbox-claimed");
  await operator.getByRole("button", { name: "Submit answer" }).click();
  await operator.getByText(/Answer submitted/).waitFor();
  await operator.getByText("Nothing to do").waitFor();
  await capture(operator, "inbox");

  // the buyer's open page updates live and offers the dispute
  await buyer.getByText("A prince avenges his father.").waitFor({ timeout: 120_000 });
  expect(buyer.url() === taskUrl, "no navigation happened");
  await buyer.getByLabel("Reason for rejecting").fill("Too short: I asked for the plot.");
  await buyer.getByRole("button", { name: "Reject and refund" }).click();
  await buyer.getByText("Rejected: Too short: I asked for the plot.").waitFor();
  await capture(buyer, "task-rejected");
  await buyer.context().close();

  await operator.goto("/agents");
  await operator.getByRole("link", { name: humanAgentName }).click();
  await operator.getByText("Too short: I asked for the plot.").waitFor();
  await capture(operator, "agent");
  await disableAgent(operator);
  await operator.goto("/agents");
  await capture(operator, "agents");
  await operator.goto("/leaderboard");
  await capture(operator, "leaderboard");
  await operator.context().close();
});

await test("operator registers an llm agent and test-calls it: the answer, no task, no money", async () => {
  const operator = await newPage();
  await login(operator, operatorEmail);
  await operator.goto("/agents");
  await operator.getByLabel("Name").fill(`llm-${uid()}`);
  await operator.getByLabel("Kind").selectOption("llm");
  await operator.getByLabel("Base URL").fill(llmBaseUrl);
  await operator.getByLabel("Model").fill("e2e-model");
  await operator.getByRole("button", { name: "Create agent" }).click();
  await operator.waitForURL(/\/agents\/[0-9a-f-]{36}$/);
  await operator.getByRole("button", { name: "Send test call" }).click();
  const result = operator.getByTestId("test-call-result");
  await result.getByText("OK from the e2e double").waitFor();
  expect((await result.textContent()).startsWith("Answered in"), `a successful test call, got ${await result.textContent()}`);
  expect(llmRequests.length === 1 && llmRequests[0].path === "/v1/chat/completions", `one request to the endpoint, got ${JSON.stringify(llmRequests)}`);
  expect(llmRequests[0].body.messages.at(-1).content === "Reply with the single word OK.", "the probe prompt was sent");
  await operator.getByText("No task yet.").waitFor(); // the probe created no task
  await capture(operator, "agent-llm-test-call");
  await disableAgent(operator);
  await operator.context().close();
});

await test("operator creates an API key and sees it once", async () => {
  const operator = await newPage();
  await login(operator, operatorEmail);
  await operator.goto("/api-keys");
  await operator.getByText("No API keys yet.").waitFor();
  await operator.getByLabel("Key name").fill("laptop runner");
  await operator.getByRole("button", { name: "Create key" }).click();
  const key = await operator.getByTestId("new-api-key").textContent();
  expect(key?.startsWith("dk_"), `a dk_ key is shown, got ${key}`);
  await capture(operator, "api-keys-created");
  await operator.reload();
  await operator.getByRole("table", { name: "API keys" }).getByText("laptop runner").waitFor();
  expect((await operator.getByTestId("new-api-key").count()) === 0, "the key is not shown again");
  expect(!(await operator.content()).includes(key), "the secret is nowhere on the page");
  await capture(operator, "api-keys");
  await operator.context().close();
});

await test("admin triggers training, sees the new version and rolls back", async () => {
  // outcomes to learn from: a second buyer's tasks, run by the replay agents
  const email = `trainer-${uid()}@e2e.example.com`;
  await api.call("POST", "/auth/register", { body: { email, password: PASSWORD } });
  const token = await api.login(email, PASSWORD);
  const me = await api.call("GET", "/users/me", { token });
  await api.call("POST", `/admin/users/${me.id}/credit`, { token: adminToken, body: { amount_sat: 10 ** 9 } });
  for (let i = 0; i < 12; i++) {
    await api.call("POST", "/tasks", { token, body: { description: PROMPTS[1 + i], complexity: 1 + (i % 5) } });
  }
  // every task delivered or failed (a wrong recorded answer fails it): outcomes either way
  const open = async () => {
    let n = 0;
    for (const status of ["created", "assigned", "executing"]) n += (await api.call("GET", `/tasks?status=${status}&limit=1`, { token })).total;
    return n;
  };
  const deadline = Date.now() + 180_000;
  while ((await open()) > 0) {
    expect(Date.now() < deadline, "the replay agents settle 12 tasks within 3 minutes");
    await new Promise((r) => setTimeout(r, 250));
  }

  const admin = await newPage();
  await login(admin, ADMIN.email, ADMIN.password);
  await admin.goto("/admin");
  await admin.getByText("Satoshis transacted").waitFor();
  await capture(admin, "admin-overview");
  await admin.goto("/models");
  await admin.getByText("No version yet").waitFor();
  for (const version of [1, 2]) {
    await admin.getByRole("button", { name: "Train now" }).click();
    await admin.getByRole("link", { name: `v${version}`, exact: true }).waitFor({ timeout: 120_000 });
  }
  const champion = async () => (await admin.getByText("Champion", { exact: true }).locator("..").textContent()) ?? "";
  // make v1 and then v2 the champion (the gate may have promoted either already), then roll back
  // The champion is read from the API, not from the table: right after a promotion the table may
  // still show the previous champion's row without its Promote button.
  const championVersion = async () => (await api.call("GET", "/model/status", { token: adminToken })).champion_version;
  for (const version of [1, 2]) {
    if ((await championVersion()) !== version) {
      const promote = admin.getByRole("row", { name: new RegExp(`^v${version}\\b`) }).getByRole("button", { name: "Promote" });
      await promote.waitFor({ timeout: 30_000 });
      await promote.click();
      await admin.getByRole("dialog").getByRole("button", { name: "Promote" }).click();
      await admin.getByRole("dialog").waitFor({ state: "hidden" });
      await admin.getByText(new RegExp(`v${version} · promote by admin@e2e`)).first().waitFor();
    }
  }
  const championIs = (version) => admin.getByText("Champion", { exact: true }).locator("..").getByText(version, { exact: true }).waitFor({ timeout: 30_000 });
  // the status card refetches after the alias history: wait for it, do not read it at once
  await championIs("v2").catch(async () => expect(false, `champion is v2 before the rollback, got ${await champion()}`));
  await capture(admin, "models");
  await admin.getByRole("button", { name: "Roll back" }).click();
  await admin.getByRole("dialog").getByRole("button", { name: "Roll back" }).click();
  await admin.getByText(/rollback by admin@e2e\.example\.com/).waitFor();
  await championIs("v1").catch(async () => expect(false, `champion is v1 after the rollback, got ${await champion()}`));
  await admin.getByRole("link", { name: "v1", exact: true }).click();
  await admin.getByText("Confusion matrix").waitFor();
  await capture(admin, "model-version");
  // the agent paid for the buyer's accepted task: its earnings over time
  const earner = (await api.call("GET", "/agents/leaderboard?min_tasks=0", { token: adminToken })).find((a) => a.earnings_sat > 0);
  expect(earner, "an agent earned from the accepted task");
  await admin.goto(`/agents/${earner.agent_id}`);
  await admin.getByRole("img", { name: /Earned per day/ }).waitFor();
  expect((await admin.getByText(/^Earned: /).textContent()).includes(earner.earnings_sat.toLocaleString("en-US")), "the chart's total is the agent's earnings");
  await capture(admin, "agent-earnings");
  await admin.goto("/admin/ledger");
  await admin.getByRole("button", { name: "Run check" }).click();
  await admin.getByText("Balanced: every cached balance equals its entries.").waitFor();
  await capture(admin, "admin-ledger");
  await admin.goto("/leaderboard");
  await admin.getByRole("table", { name: "Leaderboard" }).waitFor();
  await admin.goto("/tasks");
  await capture(admin, "admin-tasks");
  await admin.context().close();
});

await test("a reset password must be changed at the next login", async () => {
  const email = `reset-${uid()}@e2e.example.com`;
  await api.call("POST", "/auth/register", { body: { email, password: PASSWORD } });
  const user = (await api.call("GET", `/admin/users?q=${encodeURIComponent(email)}`, { token: adminToken })).items[0];
  const admin = await newPage();
  await login(admin, ADMIN.email, ADMIN.password);
  await admin.goto("/admin/users");
  await admin.getByLabel("Search email or name").fill(email);
  await admin.getByRole("row", { name: new RegExp(email) }).getByRole("button", { name: "Reset password" }).click();
  await admin.getByRole("dialog").getByRole("button", { name: "Reset password" }).click();
  const temporary = (await admin.getByTestId("temporary-password").textContent()) ?? "";
  expect(temporary.length >= 12 && user, "a temporary password is shown");
  await admin.context().close();
  const page = await newPage();
  await login(page, email, temporary);
  await page.getByText("An admin reset your password.").waitFor();
  await capture(page, "must-change-password");
  await page.getByLabel("Current password").fill(temporary);
  await page.getByLabel("New password").fill("my-own-new-password");
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByRole("heading", { name: "My tasks" }).waitFor();
  await page.context().close();
});

await test("no console errors", async () => {
  expect(consoleErrors.length === 0, consoleErrors.join("\n"));
});

await test("axe: no serious or critical violation on any page", async () => {
  const bad = axeReport.flatMap((r) => r.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => `${r.page}: ${v.id} (${v.impact}, ${v.nodes} nodes) ${v.help} at ${v.target}`));
  expect(bad.length === 0, bad.join("\n"));
});

await browser.close();
await server.stop();

const failed = results.filter((r) => !r.ok);
const summary = {
  seconds: (Date.now() - started) / 1000,
  tests: results,
  axe: axeReport,
  console_errors: consoleErrors,
  screenshots: screenshots.map((s) => s.slice(root.length + 1)),
};
writeFileSync(join(root, "var", "e2e-report.json"), JSON.stringify(summary, null, 2));
for (const r of failed) console.log(`\n--- ${r.name}\n${r.error}`);
const moderate = axeReport.reduce((n, r) => n + r.violations.filter((v) => v.impact === "moderate" || v.impact === "minor").length, 0);
console.log(`\naxe: ${axeReport.length} pages, ${moderate} moderate/minor violations (serious/critical fail the run); ${screenshots.length} screenshots in var/screenshots/`);
console.log(`e2e: ${summary.seconds.toFixed(1)} s`);
console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);
