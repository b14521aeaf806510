// Drives the proxy's live page in headless Chromium (Debian's /usr/bin/chromium, through
// playwright-core; no browser download) and checks what an operator would look at. Run by the
// Rust test tests/tests/live_page.rs with one JSON argument:
//   {"url", "connection", "events": [topic, ...], "filter", "filtered_out", "screenshot"}
// It prints one JSON line {"ok": true, ...} or {"ok": false, "error": ...} and exits 0 or 1.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const cfg = JSON.parse(process.argv[2]);
const TIMEOUT = 20000;
const profile = mkdtempSync(join(tmpdir(), "xbus-chromium-"));
const errors = [];
let context;

async function tailTopics(page) {
  return page.$$eval("#tail tbody tr td:nth-child(3)", (tds) => tds.map((td) => td.textContent));
}

async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 1100 },
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") errors.push("console: " + m.text());
  });
  page.on("pageerror", (e) => errors.push("page error: " + e.message));
  page.on("requestfailed", (r) => {
    // the live tail's stream is aborted on purpose when the filter changes
    if (!r.url().includes("/api/v1/stream")) errors.push("request failed: " + r.url());
  });
  await page.goto(cfg.url, { waitUntil: "load", timeout: TIMEOUT });

  // the counters and the test's connection
  await page.waitForSelector("#status.ok", { timeout: TIMEOUT });
  await page.waitForFunction(
    (remote) => [...document.querySelectorAll("#connections tbody tr")].some((tr) => tr.textContent.includes(remote)),
    cfg.connection,
    { timeout: TIMEOUT },
  );

  // the events the test publishes, in the live tail
  await page.waitForFunction(
    (topics) => {
      const seen = [...document.querySelectorAll("#tail tbody tr td:nth-child(3)")].map((td) => td.textContent);
      return topics.every((t) => seen.some((s) => s.startsWith(t)));
    },
    cfg.events,
    { timeout: TIMEOUT },
  );
  // and the topics table
  await page.waitForFunction(
    (topics) => topics.every((t) => document.querySelector("#topics tbody").textContent.includes(t)),
    cfg.events,
    { timeout: TIMEOUT },
  );

  // the filter: only events under the prefix from then on
  await page.fill("#filter", cfg.filter);
  await page.click("#filter-form button");
  await page.waitForFunction(
    (prefix) => {
      const seen = [...document.querySelectorAll("#tail tbody tr td:nth-child(3)")].map((td) => td.textContent);
      return seen.length >= 3;
    },
    cfg.filter,
    { timeout: TIMEOUT },
  );
  const after = await tailTopics(page);
  const stray = after.filter((t) => !t.startsWith(cfg.filter));
  if (stray.length > 0) throw new Error("the filter let through " + JSON.stringify(stray));
  if (after.some((t) => t.startsWith(cfg.filtered_out))) throw new Error("filtered-out events shown");

  // the plot has data (a few seconds of rates) and the counters show rates
  await page.waitForFunction(() => Number(document.body.dataset.samples || 0) >= 3, null, { timeout: TIMEOUT });
  const rates = await page.$$eval("#counters .card .r", (rs) => rs.map((r) => r.textContent));
  if (!rates.some((r) => /^[0-9.]+[kMG]?\/s$/.test(r) && parseFloat(r) > 0)) {
    throw new Error("no message rate shown: " + JSON.stringify(rates));
  }

  if (cfg.screenshot) await page.screenshot({ path: cfg.screenshot, fullPage: true });
  const counters = await page.$$eval("#counters .card", (cards) => cards.length);
  if (errors.length > 0) throw new Error("errors in the page: " + errors.join("; "));
  return { ok: true, tail_rows: after.length, counters };
}

main()
  .then(async (r) => {
    console.log(JSON.stringify(r));
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    process.exit(0);
  })
  .catch(async (e) => {
    console.log(JSON.stringify({ ok: false, error: String(e && e.stack ? e.stack : e), errors }));
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
    process.exit(1);
  });
