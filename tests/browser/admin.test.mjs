// The admin page in headless Chromium (Debian's chromium driven by playwright-core) against a
// local stack: the real functions under `cargo lambda watch` behind tools/router.py, with
// Postgres, moto and the plex.tv/TMDB/Plex stubs. tools/e2e.py starts that stack and runs this
// file with:
//   BASE_URL        the router's origin (the page at /, the API under /api/plex/...)
//   API_TOKEN       the stack's API token
//   DATABASE_URL    the stack's database (to check what got marked)
//   SCREENSHOT_DIR  where each scenario saves its screenshot
// The scenarios build on each other (config, then plays, then a conflict) and run in order.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = must("BASE_URL").replace(/\/$/, "");
const API_TOKEN = must("API_TOKEN");
const DATABASE_URL = must("DATABASE_URL");
const SHOTS = process.env.SCREENSHOT_DIR || "screenshots";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// From a webhook's 202 to its log row (the processor may still be starting).
const PROCESSING_MS = Number(process.env.BROWSER_PROCESSING_TIMEOUT_MS || 300_000);
const PLEX_TOKEN = "pLxT0k3n-browser-abcdefghijkl";

const world = JSON.parse(readFileSync(new URL("../../fixtures/world.json", import.meta.url)));
const shared = {}; // what one scenario hands the next (the webhook URL)

function must(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must be set (run through tools/e2e.py)`);
  return v;
}

let browser;
before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});
after(async () => {
  await browser?.close();
});

/** A fresh tab (own sessionStorage) that records anything the page should never do. */
async function newPage({ width = 1200, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  // A function's first request may still be compiling it under cargo lambda watch.
  page.setDefaultTimeout(120_000);
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A CSP violation or a script error, not the network log line of an expected 401.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) page.problems.push(`console: ${m.text()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(`${BASE}/`) && !r.url().startsWith("data:")) page.problems.push(`request outside the stack: ${r.url()}`);
  });
  page.on("dialog", (d) => d.accept());
  return page;
}

async function done(page, shot) {
  if (shot) await page.screenshot({ path: join(SHOTS, shot), fullPage: true });
  assert.deepEqual(page.problems, [], "no script errors, CSP violations or outside requests");
  await page.context().close();
}

async function signIn(page, token = API_TOKEN) {
  // Locally the page comes through cargo lambda watch, which now and then answers one request
  // with a 500 of its own (the function never sees it; seen under load, cause not found), so
  // the script never loads and the sign-in form stays hidden. A reload is what a user would do;
  // a page that never shows the form still fails after three tries.
  for (let tries = 1; ; tries += 1) {
    await page.goto(`${BASE}/`);
    try {
      await page.getByLabel("API token").waitFor({ state: "visible", timeout: 20_000 });
      break;
    } catch (e) {
      if (tries === 3) throw e;
    }
  }
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Continue" }).click();
}

/** Polls `fn` until it returns a truthy value. */
async function until(what, fn, timeoutMs = 30_000, everyMs = 1000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
}

/** Every control on screen has an accessible name (a label, aria-label or text). */
async function assertLabelled(page) {
  const unnamed = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => {
      if (el.tagName === "BUTTON") return !el.textContent.trim() && !el.getAttribute("aria-label");
      return !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.getAttribute("aria-labelledby");
    })
    .map((el) => el.outerHTML.slice(0, 120)));
  assert.deepEqual(unnamed, [], "controls without an accessible name");
}

function psql(sql) {
  return execFileSync("psql", [DATABASE_URL, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], { encoding: "utf8" }).trim();
}

function episodeWatched(tmdbId, season, episode) {
  return psql(`SELECT coalesce(ep->>'watched', 'missing')
    FROM tvshows, jsonb_array_elements(seasons) s, jsonb_array_elements(s->'episodes') ep
    WHERE tmdb_id = ${tmdbId} AND (s->>'seasonNumber')::int = ${season} AND (ep->>'episodeNumber')::int = ${episode}`);
}

/** Posts a Plex webhook as Plex Media Server does (multipart: payload + thumb). */
async function postWebhook(url, payload) {
  const form = new FormData();
  form.append("payload", new Blob([JSON.stringify(payload)], { type: "application/json" }));
  form.append("thumb", new Blob([Buffer.from("ffd8ffe000104a464946000101ffd9", "hex")], { type: "image/jpeg" }), "image.jpg");
  const resp = await fetch(url, { method: "POST", body: form });
  return { status: resp.status, body: await resp.json() };
}

function officeScrobble() {
  const p = structuredClone(world.plex_webhooks.episode_scrobble);
  p.Metadata.lastViewedAt = Math.floor(Date.now() / 1000);
  return p;
}

/** "The Office" from a second library with no external ids: the US show or the UK original? */
function ambiguousScrobble() {
  const p = officeScrobble();
  Object.assign(p.Metadata, {
    ratingKey: "61013", key: "/library/metadata/61013", parentRatingKey: "61007", grandparentRatingKey: "61000",
    guid: "plex://episode/5d9c0a3f2df347001e3b6a51", parentGuid: "plex://season/5d9c0a3e2df347001e3b6a3c",
    grandparentGuid: "plex://show/5d9c08a4e9d5a1001f4e7c61", title: "Downsize", grandparentTitle: "The Office",
    year: 2001, librarySectionTitle: "British TV",
  });
  delete p.Metadata.Guid;
  return p;
}

async function api(path) {
  const resp = await fetch(`${BASE}${path}`, { headers: { Authorization: `Bearer ${API_TOKEN}` } });
  assert.equal(resp.status, 200, `${path}: ${resp.status}`);
  return resp.json();
}

// ---------------------------------------------------------------------------------------------

test("1. paste the API token, save a Plex token -> the webhook URL is shown", async () => {
  const page = await newPage();
  await page.goto(`${BASE}/`);
  // Before the token: only the sign-in form.
  assert.equal(await page.locator("#nav").isVisible(), false);
  await signIn(page);
  await page.getByRole("heading", { name: "Setup" }).waitFor();
  await page.getByText("Welcome! Let's connect your Plex server.").waitFor();
  assert.equal(await page.locator("#webhook-card").isVisible(), false, "no webhook URL before saving");
  await assertLabelled(page);

  await page.getByLabel("Plex token").fill(PLEX_TOKEN);
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.locator("#setup-feedback", { hasText: /Saved\. Connected to basement-nas/ }).waitFor();
  const url = await page.getByLabel("Webhook URL", { exact: true }).inputValue();
  assert.match(url, new RegExp(`^${BASE.replace(/[.]/g, "\\.")}/api/plex/webhook\\?secret=[A-Za-z0-9_-]{20,}$`));
  assert.ok(await page.getByText("Settings → Webhooks").isVisible(), "the Plex steps are shown");
  assert.equal(await page.locator("#server-name").textContent(), "basement-nas");
  // The token is in this tab's sessionStorage only; the Plex token is not kept in the form.
  const storage = await page.evaluate(() => ({
    session: sessionStorage.getItem("plexsync.apiToken"), local: localStorage.length, cookie: document.cookie,
  }));
  assert.deepEqual(storage, { session: API_TOKEN, local: 0, cookie: "" });
  assert.equal(await page.getByLabel("Plex token").inputValue(), "");
  assert.ok(!(await page.content()).includes(PLEX_TOKEN), "the Plex token is not in the page");
  const config = await api("/api/plex/config");
  assert.equal(config.webhookUrl, url);
  shared.webhookUrl = url;

  // Jellyfin beside Plex: name the account, save, and its own webhook URL (same secret) is shown.
  await page.getByLabel("Your Jellyfin user name or user id").fill("alice");
  await page.getByRole("button", { name: "Save Jellyfin" }).click();
  await page.locator("#jellyfin-feedback", { hasText: "Saved. Paste the Jellyfin webhook URL into Jellyfin." }).waitFor();
  const jellyfinUrl = await page.getByLabel("Jellyfin webhook URL").inputValue();
  assert.equal(jellyfinUrl, url.replace("/api/plex/webhook", "/api/jellyfin/webhook"));
  assert.ok(await page.getByText("Add Generic Destination").isVisible(), "the Jellyfin steps are shown");
  const jellyfin = (await api("/api/senders")).senders.find((v) => v.sender === "jellyfin");
  assert.deepEqual([jellyfin.account, jellyfin.enabled, jellyfin.webhookUrl], ["alice", true, jellyfinUrl]);
  await assertLabelled(page);
  await done(page, "1-setup.png");
});

test("2. a scrobble posted to that URL appears in the activity list and its episode is marked", async () => {
  assert.ok(shared.webhookUrl, "scenario 1 saved the configuration");
  assert.equal(episodeWatched(2316, 1, 1), "false", "S01E01 starts unwatched");
  const posted = await postWebhook(shared.webhookUrl, officeScrobble());
  assert.equal(posted.status, 202, JSON.stringify(posted.body));

  const page = await newPage();
  await signIn(page);
  await page.getByRole("heading", { name: "Setup" }).waitFor();
  await page.locator("#nav").getByRole("link", { name: "Activity" }).click();
  await page.getByRole("heading", { name: "Activity" }).waitFor();
  const row = page.locator("tr[data-status=success]", { hasText: "S01E01" });
  await until("the success row of The Office S01E01", async () => {
    if (await row.count()) return true;
    await page.getByRole("button", { name: "Refresh" }).click();
    return false;
  }, PROCESSING_MS, 2000);
  assert.match(await row.first().textContent(), /The Office S01E01.*Done.*marked watched/i);
  assert.equal(episodeWatched(2316, 1, 1), "true", "S01E01 is marked in the tracker");
  assert.equal(episodeWatched(2316, 1, 2), "false", "S01E02 is not");
  // The day's bar in the chart and the open-conflict count.
  await page.getByRole("button", { name: "Refresh" }).click();
  await page.locator("svg.chart rect.bar.ok").first().waitFor();
  assert.equal(await page.locator("#open-conflicts").textContent(), "0");
  // The dead-letter queue (moto) is empty and says so.
  await page.getByText("Empty: nothing has failed for good.").waitFor();
  assert.equal(await page.locator("#dead-letter-count").textContent(), "0");
  // The status filter: nothing failed.
  await page.getByLabel("Status").selectOption("failed");
  await page.getByText("No “Failed” entries").waitFor();
  await page.getByLabel("Status").selectOption("");
  await row.first().waitFor();
  await assertLabelled(page);
  await done(page, "2-activity.png");
});

test("3. an ambiguous show's conflict is resolved from the page and its waiting episode is marked", async () => {
  const posted = await postWebhook(shared.webhookUrl, ambiguousScrobble());
  assert.equal(posted.status, 202, JSON.stringify(posted.body));

  const page = await newPage();
  await signIn(page);
  await page.locator("#nav").getByRole("link", { name: /Conflicts/ }).click();
  const card = page.locator("article.conflict", { hasText: "The Office" });
  await until("the conflict for the ambiguous The Office", async () => {
    if (await card.count()) return true;
    await page.getByRole("button", { name: "Refresh" }).click();
    return false;
  }, PROCESSING_MS, 2000);
  assert.match(await card.textContent(), /1 play waiting/);
  // Both candidates, with their scores: the US show already in the tracker, the UK one on TMDB.
  const candidates = card.locator("tbody tr");
  assert.ok(await candidates.count() >= 2, "at least two candidates");
  assert.match(await card.textContent(), /In your tracker/);
  assert.match(await card.textContent(), /TMDB 2996/);
  assert.match(await card.textContent(), /\d+%/);
  assert.equal(await page.locator("#conflict-badge").textContent(), "1");
  await assertLabelled(page);
  await page.screenshot({ path: join(SHOTS, "3-conflicts.png"), fullPage: true });

  assert.equal(episodeWatched(2996, 1, 1), "", "the UK show is not in the tracker yet");
  await card.locator("tr", { hasText: "TMDB 2996" }).getByRole("button", { name: /Add from TMDB/ }).click();
  const result = page.locator("article.result");
  await result.waitFor({ timeout: 60_000 });
  const text = await result.textContent();
  assert.match(text, /now mapped to The Office \(added from TMDB 2996\)/);
  assert.match(text, /Marked S01E01/);
  assert.equal(episodeWatched(2996, 1, 1), "true", "the waiting episode is marked in the new show");
  assert.equal(episodeWatched(2996, 1, 2), "false");
  await page.screenshot({ path: join(SHOTS, "3-conflict-resolved.png"), fullPage: true });

  // Shows: both Plex shows mapped; sync the US show's watch history from the Plex server.
  await page.locator("#nav").getByRole("link", { name: "Shows" }).click();
  // The US show, as alice's server knows it (rating key 48200; the Plex stub has its episodes).
  const us = page.locator('tr[data-plex-key="48200"]');
  await us.waitFor();
  const rows = page.locator("tr[data-mapping]");
  assert.equal(await rows.count(), 2, "the US show and the resolved one");
  assert.ok(!(await page.locator("#mapping-list").textContent()).includes("Not mapped"), "both are mapped");
  await us.getByRole("button", { name: /Sync watch history/ }).click();
  const report = page.locator("tr.detail .msg.ok");
  await report.waitFor();
  // What alice's server (the stub, from the world) reports watched; S01E01 was marked by scenario 2.
  const leaves = world.plex_server["/library/metadata/48200/allLeaves"].MediaContainer.Metadata;
  const watched = leaves.filter((e) => e.viewCount > 0);
  const inTracker = watched.filter((e) => e.parentIndex === 1); // the tracker has season 1
  const label = (e) => `S${String(e.parentIndex).padStart(2, "0")}E${String(e.index).padStart(2, "0")}`;
  const newly = inTracker.filter((e) => e.index !== 1).map(label);
  assert.equal(await report.textContent(), `Watched in Plex: ${watched.length}. Newly marked: ${newly.length} (${newly.join(", ")}). `
    + `Already watched: 1. Not in the tracker: ${watched.length - inTracker.length}.`);
  for (const e of inTracker) assert.equal(episodeWatched(2316, 1, e.index), "true", label(e));
  await assertLabelled(page);
  await page.screenshot({ path: join(SHOTS, "3-mappings.png"), fullPage: true });
  await page.getByLabel("Not mapped", { exact: true }).check();
  await page.getByText("Every show is mapped").waitFor();
  await page.getByLabel("All", { exact: true }).check();
  await us.waitFor();
  await done(page);
});

test("4. a wrong API token -> a clear message, nothing shown", async () => {
  const page = await newPage();
  await signIn(page, "wrong-token-0123456789abcdef");
  const banner = page.getByRole("alert");
  await banner.waitFor();
  assert.match(await banner.textContent(), /API token was not accepted/);
  for (const view of ["setup", "conflicts", "mappings", "activity"]) {
    assert.equal(await page.locator(`#view-${view}`).isVisible(), false, `${view} is hidden`);
  }
  assert.equal(await page.locator("#nav").isVisible(), false);
  assert.ok(!(await page.locator("main").textContent()).includes("basement-nas"), "no data shown");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the wrong token is not kept");
  assert.equal(await page.getByLabel("API token").getAttribute("aria-invalid"), "true");
  await page.screenshot({ path: join(SHOTS, "4-wrong-token.png"), fullPage: true });
  // An empty submit is refused without a request.
  await page.getByLabel("API token").fill("");
  await page.getByRole("button", { name: "Continue" }).click();
  assert.match(await banner.textContent(), /Paste your API token first/);
  await done(page);
});

test("5. keyboard only: the setup form can be filled and saved without a mouse", async () => {
  const page = await newPage();
  await page.goto(`${BASE}/`);
  const focusOn = async (id, max = 40) => {
    for (let i = 0; i < max; i += 1) {
      if (await page.evaluate(() => document.activeElement?.id) === id) return;
      await page.keyboard.press("Tab");
    }
    throw new Error(`Tab never reached #${id}`);
  };
  const focusVisible = () => page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2;
  });
  await focusOn("api-token");
  await page.keyboard.type(API_TOKEN);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Setup" }).waitFor();
  await page.getByText("Change settings").waitFor();
  assert.equal(await page.locator("#auto-add").isChecked(), true);

  await focusOn("plex-token");
  assert.ok(await focusVisible(), "the focused field shows a focus ring");
  await page.keyboard.type(PLEX_TOKEN);
  await focusOn("auto-add");
  assert.ok(await focusVisible(), "the focused switch shows a focus ring");
  await page.keyboard.press("Space");
  await focusOn("allowed-accounts");
  await page.keyboard.type("bob, 4242");
  await focusOn("save-setup");
  assert.ok(await focusVisible(), "the focused button shows a focus ring");
  await page.keyboard.press("Enter");
  await page.locator("#setup-feedback", { hasText: /Saved\. Connected to basement-nas/ }).waitFor();
  const config = await api("/api/plex/config");
  assert.equal(config.autoAddShows, false, "the switch was turned off with the keyboard");
  assert.deepEqual(config.allowedAccounts, ["bob", 4242]);
  assert.equal(config.webhookUrl, shared.webhookUrl, "saving again keeps the webhook URL");
  // After saving, focus is on the webhook URL, ready to copy.
  assert.equal(await page.evaluate(() => document.activeElement?.id), "webhook-url");
  await done(page, "5-keyboard.png");
});

test("every view is readable on a 375 px wide phone screen", async () => {
  const page = await newPage({ width: 375, height: 800 });
  await signIn(page);
  for (const view of ["setup", "conflicts", "mappings", "activity"]) {
    await page.goto(`${BASE}/#${view}`);
    await page.locator(`#view-${view}`).waitFor();
    await page.waitForLoadState("networkidle");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `#${view} is ${overflow} px wider than the screen`);
  }
  await page.goto(`${BASE}/#activity`);
  await page.locator("tr[data-log]").first().waitFor();
  await done(page, "6-phone-activity.png");
});
