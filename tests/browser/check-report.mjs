// Opens a run's HTML report (`thingpress report RUN --html PAGE`) in headless Chromium and
// checks it against the same run's JSON report (`thingpress report RUN --output json`):
//   - it renders offline: no console error, no uncaught exception, no request but the page;
//   - the charts' elements exist (outcome bars, throughput bars and levels, chunk bars);
//   - the numbers shown equal the report's (entries, every outcome, every error name);
//   - filtering the rejected table by error name, and searching it, show the right rows.
// Then it saves a screenshot of the whole page.
//
//   node tests/browser/check-report.mjs PAGE.html REPORT.json SCREENSHOT.png
//
// Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM). Exits 1 naming every failed check.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";

const [pagePath, reportPath, screenshotPath] = process.argv.slice(2);
if (!pagePath || !reportPath || !screenshotPath) {
  console.error("usage: check-report.mjs PAGE.html REPORT.json SCREENSHOT.png");
  process.exit(2);
}
const { report, rejected } = JSON.parse(readFileSync(reportPath, "utf8"));
const url = pathToFileURL(resolve(pagePath)).href;
// The page embeds at most this many rejected entries (thingpress_html::EMBEDDED_REJECTIONS).
const EMBEDDED = 500;

const failures = [];
function check(ok, what) {
  console.log(`${ok ? "PASS" : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // This machine's network is closed: without these, Chromium keeps trying to reach Google.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`exception: ${e.message}`));
  page.on("request", (r) => { if (r.url() !== url) problems.push(`request: ${r.url()}`); });
  await page.goto(url, { waitUntil: "load" });
  check(problems.length === 0, `renders offline without errors${problems.length ? ": " + problems.join("; ") : ""}`);

  const text = async (selector) => (await page.locator(selector).first().textContent())?.trim();
  const count = (selector) => page.locator(selector).count();

  // The header.
  check((await text("h1")).includes(report.runId), `the header names run ${report.runId}`);
  check((await text("#status")) === report.status, `status ${report.status}`);
  check(Number(await text("#entries")) === report.entries, `entries ${report.entries}`);
  check((await text("#profile")) === report.profile, `profile ${report.profile}`);

  // The outcomes, as bars with their numbers.
  const o = report.outcomes;
  const done = report.operation === undefined || report.operation === "import"
    ? { "registered": o.registered ?? 0, "already registered": o.alreadyRegistered ?? 0 }
    : {};
  const expected = { ...done, ...(o.rejectedByError ?? {}) };
  // An incomplete run's entries without an outcome (each entry counts once per target).
  const outcomes = ["registered", "alreadyRegistered", "activated", "alreadyActive", "removed",
    "wouldRemove", "alreadyRemoved", "rejected"].reduce((sum, k) => sum + (o[k] ?? 0), 0);
  const missing = report.entries * Math.max(1, (report.targets ?? []).length) - outcomes;
  if (missing > 0) { expected["no outcome yet"] = missing; }
  check(await count("#outcomes svg rect.bar") === Object.keys(expected).length,
    `one outcome bar per outcome and error name (${Object.keys(expected).length})`);
  for (const [label, n] of Object.entries(expected)) {
    const shown = await text(`#outcomes [data-count="${label}"]`);
    check(Number(shown) === n, `${label}: ${n} (page shows ${shown})`);
  }

  // Throughput against the pace and the quota, and the chunks over time.
  const certificates = (o.registered ?? 0) + (o.alreadyRegistered ?? 0);
  if (certificates > 0) {
    check(await count("#throughput svg rect.rate") > 0, "throughput bars drawn");
    check(await count("#throughput svg line.paced") === 1, "the paced rate drawn");
    check(await count("#throughput svg line.quota") === 1, "the quota drawn");
  }
  const chunks = await count("#timeline svg rect.chunk");
  check(chunks > 0 && chunks === await count("#chunks tbody tr"), `chunk bars drawn (${chunks}), one per row of the chunk table`);

  // The rejected table: every embedded entry, filtered by error name and by text.
  const listed = Math.min(rejected.length, EMBEDDED);
  const rows = "#rejected-table tbody tr";
  const visible = () => page.locator(`${rows}:visible`).count();
  if (listed === 0) {
    check(await count("#no-rejections") === 1, "no rejected entries, said so");
  } else {
    const embedded = rejected.slice(0, EMBEDDED);
    check(await count(rows) === listed, `${listed} rejected entries listed`);
    for (const name of Object.keys(o.rejectedByError ?? {})) {
      await page.selectOption("#error-filter", name);
      const want = embedded.filter((r) => r.error === name).length;
      const got = await visible();
      check(got === want && Number(await text("#shown")) === want, `filter ${name}: ${want} rows (page shows ${got})`);
    }
    await page.selectOption("#error-filter", "");
    check(await visible() === listed, "every error again: all rows");
    const needle = embedded.find((r) => r.deviceId)?.deviceId;
    if (needle) {
      await page.fill("#search", needle);
      const want = embedded.filter((r) => JSON.stringify(Object.values(r)).toLowerCase().includes(needle.toLowerCase())).length;
      const got = await visible();
      check(got >= 1 && got <= want, `search ${needle}: ${got} rows`);
      await page.fill("#search", "");
    }
  }
  await page.screenshot({ path: screenshotPath, fullPage: true });
  console.log(`screenshot: ${screenshotPath}`);
} finally {
  await browser.close();
}
if (failures.length > 0) {
  console.error(`${failures.length} check(s) failed: ${failures.join(" | ")}`);
  process.exit(1);
}
