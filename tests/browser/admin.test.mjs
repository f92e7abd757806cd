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
  // The stub Plex server (tools/stubs.py) speaks plain http: without the LAN opt-in the save is
  // refused, in the form's words (not the API's field names), and nothing is stored.
  const allowHttp = page.getByLabel("Allow a plain http address (a server on your own network)");
  assert.equal(await allowHttp.isChecked(), false, "https only by default");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  const refused = page.locator("#setup-feedback .msg.error");
  await refused.waitFor();
  const why = await refused.textContent();
  assert.match(why, /plain http.*switch on “Allow a plain http address”/, why);
  assert.doesNotMatch(why, /allowInsecureHttp|plexServerUrl/, why);
  assert.equal(psql("SELECT count(*) FROM plex_config"), "0", "nothing stored");
  await allowHttp.check();
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.locator("#setup-feedback", { hasText: /Saved\. Connected to basement-nas/ }).waitFor();
  assert.equal((await api("/api/plex/config")).allowInsecureHttp, true);
  const url = await page.getByLabel("Webhook URL", { exact: true }).inputValue();
  assert.match(url, new RegExp(`^${BASE.replace(/[.]/g, "\\.")}/api/plex/webhook\\?secret=[A-Za-z0-9_-]{20,}$`));
  assert.ok(await page.getByText("Settings → Webhooks").isVisible(), "the Plex steps are shown");
  // The local stack's URL is on 127.0.0.1: the page says a Plex server elsewhere cannot reach it.
  assert.match(await page.locator("#webhook-local-note").textContent(), /only a Plex server running on this same machine/);
  assert.ok(await page.locator("#webhook-local-note").isVisible());
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
  // Once connected, the page offers to bring in the Plex history (scenario 7 runs it); offering
  // starts nothing.
  await page.locator("#import-card").getByRole("heading", { name: "Bring in your Plex history" }).waitFor();
  assert.ok(await page.getByRole("button", { name: "Import my Plex history" }).isVisible());
  assert.equal((await api("/api/plex/import")).import, null);

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

/** A show the tracker follows (season 1, three unwatched episodes), added as a user would have. */
function seedTrackerShow(tmdbId, title) {
  const seasons = [{ seasonNumber: 1, episodes: [1, 2, 3].map((n) => ({
    episodeNumber: n, title: `Episode ${n}`, airDate: "2005-03-26", watched: false, dateWatched: null })) }];
  return Number(psql(`INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons, watched_episodes, total_episodes)
    VALUES (${tmdbId}, '${title}', '2005-03-26', 'Watching', '${JSON.stringify(seasons)}'::jsonb, 0, 3) RETURNING id`));
}

/** A play of a show Plex could not match (local:// guids, no Guid array): it always asks. */
function unmatchedScrobble(ratingKey, title, episode) {
  const p = structuredClone(world.plex_webhooks.unmatched_episode_scrobble);
  const season = String(Number(ratingKey) + 1);
  const item = String(Number(ratingKey) + 1 + episode);
  Object.assign(p.Metadata, {
    ratingKey: item, key: `/library/metadata/${item}`, guid: `local://${item}`,
    parentRatingKey: season, parentGuid: `local://${season}`, parentKey: `/library/metadata/${season}`,
    grandparentRatingKey: ratingKey, grandparentGuid: `local://${ratingKey}`, grandparentKey: `/library/metadata/${ratingKey}`,
    grandparentTitle: title, title: `Episode ${episode}`, index: episode, parentIndex: 1,
    lastViewedAt: Math.floor(Date.now() / 1000),
  });
  return p;
}

function conflictState(ratingKey) {
  return psql(`SELECT resolved || ' ' || coalesce(resolution_action, '-') FROM plex_conflicts WHERE plex_rating_key = '${ratingKey}'`);
}

function mappingSync(ratingKey) {
  return psql(`SELECT sync_enabled::text FROM plex_show_mappings WHERE plex_rating_key = '${ratingKey}'`);
}

test("6. several conflicts at once: ignore the selected, accept the best matches; sync off and on for several shows", async () => {
  // Three shows the tracker follows, played from a library Plex could not match: three conflicts,
  // each offering its one tracker show at the title score (85%), each holding one play.
  const shows = [["71000", "Doctor Who", 900001, 1], ["72000", "Gilmore Girls", 900002, 2], ["73000", "Twin Peaks", 900003, 1]];
  for (const [key, title, tmdb, episode] of shows) {
    seedTrackerShow(tmdb, title);
    const posted = await postWebhook(shared.webhookUrl, unmatchedScrobble(key, title, episode));
    assert.equal(posted.status, 202, JSON.stringify(posted.body));
  }
  const page = await newPage();
  await signIn(page);
  await page.locator("#nav").getByRole("link", { name: /Conflicts/ }).click();
  const cards = page.locator("article.conflict");
  await until("the three conflicts", async () => {
    if (await cards.count() === 3) return true;
    await page.getByRole("button", { name: "Refresh" }).click();
    return false;
  }, PROCESSING_MS, 2000);
  for (const [, title] of shows) assert.match(await cards.filter({ hasText: title }).textContent(), /1 play waiting.*85%/s);
  await assertLabelled(page);
  await page.screenshot({ path: join(SHOTS, "6-bulk-conflicts.png"), fullPage: true });

  // Ignore the selected one: only Twin Peaks.
  assert.equal(await page.getByRole("button", { name: "Ignore selected" }).isDisabled(), true, "nothing selected yet");
  await page.getByLabel("Select Twin Peaks", { exact: true }).check();
  await page.getByRole("button", { name: "Ignore 1 selected show" }).click();
  await page.locator(".bulk-result li[data-status=ignored]", { hasText: "Twin Peaks" }).waitFor();
  assert.match(await page.locator(".bulk-result").textContent(), /1 show ignored\./);
  await until("two conflicts left on the page", async () => (await cards.count()) === 2);
  assert.equal(conflictState("73000"), "true ignored");
  assert.equal(mappingSync("73000"), "false", "an ignored show gets a mapping with sync off");
  assert.equal(episodeWatched(900003, 1, 1), "false", "an ignored show's play is not marked");
  assert.equal(conflictState("71000"), "false -", "the others are still open");

  // Accept every best candidate scoring 80% or more: both remaining shows, their plays marked.
  await page.getByLabel("Accept each show's best candidate when it scores at least").fill("80");
  await page.getByRole("button", { name: "Accept best matches" }).click();
  const result = page.locator(".bulk-result", { hasText: "Best matches accepted" });
  await result.waitFor({ timeout: 60_000 });
  assert.match(await result.textContent(), /2 shows mapped\./);
  for (const [key, title, tmdb, episode] of shows.slice(0, 2)) {
    const item = result.locator("li[data-status=resolved]", { hasText: title });
    assert.match(await item.textContent(), /mapped to tracker show #\d+; 1 waiting play marked\./);
    assert.equal(conflictState(key), "true user_selected", title);
    assert.equal(episodeWatched(tmdb, 1, episode), "true", `${title} S01E0${episode} is marked`);
    assert.equal(mappingSync(key), "true");
  }
  assert.equal(episodeWatched(900002, 1, 1), "false", "only the played episode");
  await page.getByText("No open conflicts").waitFor();
  await until("the conflict badge to clear", async () => page.locator("#conflict-badge").isHidden());
  assert.deepEqual((await api("/api/plex/conflicts")).conflicts, []);
  await page.screenshot({ path: join(SHOTS, "6-bulk-accepted.png"), fullPage: true });

  // Shows: sync off for two at once, then on for three (one cannot: it is mapped to nothing).
  await page.locator("#nav").getByRole("link", { name: "Shows" }).click();
  await page.locator('tr[data-plex-key="71000"]').waitFor();
  await assertLabelled(page);
  await page.getByLabel("Select Doctor Who", { exact: true }).check();
  await page.getByLabel("Select Gilmore Girls", { exact: true }).check();
  assert.equal(await page.locator("#mapping-selected").textContent(), "2 shows selected");
  await page.getByRole("button", { name: "Turn sync off" }).click();
  await page.locator("#mapping-results .msg.ok", { hasText: "Sync turned off for 2 shows." }).waitFor();
  assert.deepEqual([mappingSync("71000"), mappingSync("72000")], ["false", "false"]);
  assert.equal(mappingSync("48200"), "true", "a show not selected is untouched");
  await page.locator('tr[data-plex-key="71000"]', { hasText: "Off" }).waitFor();

  for (const title of ["Doctor Who", "Gilmore Girls", "Twin Peaks"]) await page.getByLabel(`Select ${title}`, { exact: true }).check();
  await page.getByRole("button", { name: "Turn sync on" }).click();
  const partial = page.locator("#mapping-results .msg.error");
  await partial.waitFor();
  assert.match(await partial.textContent(), /Sync turned on for 2 shows; 1 not changed\..*Twin Peaks: mapping \d+ is not linked to a tracker show/s);
  assert.deepEqual([mappingSync("71000"), mappingSync("72000"), mappingSync("73000")], ["true", "true", "false"]);
  await page.screenshot({ path: join(SHOTS, "6-bulk-mappings.png"), fullPage: true });
  await done(page);
});

test("6b. change a setting without typing the Plex token -> the saved token is kept", async () => {
  const storedBefore = psql("SELECT plex_token || ' ' || updated_at FROM plex_config").split(" ");
  const page = await newPage();
  await signIn(page);
  await page.getByText("Change settings").waitFor();
  const tokenField = page.getByLabel("Plex token");
  assert.equal(await tokenField.inputValue(), "", "the token is never put back into the form");
  assert.match(await page.locator("#plex-token-help").textContent(), /A Plex token is saved.*Leave this empty to keep it/s);
  await page.locator("#allowed-accounts").fill("bob, 4242, carol");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.locator("#setup-feedback", { hasText: "Saved. Still connected to basement-nas with your saved Plex token." }).waitFor();
  const config = await api("/api/plex/config");
  assert.deepEqual(config.allowedAccounts, ["bob", 4242, "carol"], "the setting changed");
  assert.equal(config.plexTokenSet, true);
  assert.equal(config.webhookUrl, shared.webhookUrl);
  const storedAfter = psql("SELECT plex_token || ' ' || updated_at FROM plex_config").split(" ");
  assert.equal(storedAfter[0], storedBefore[0], "the encrypted token in the database is unchanged");
  assert.notEqual(storedAfter.slice(1).join(" "), storedBefore.slice(1).join(" "), "the row was saved");
  await assertLabelled(page);
  await done(page);
  // Scenario 7's import runs in the processor on this kept token (the Plex stub wants one).
});

function episodeDate(tmdbId, season, episode) {
  return psql(`SELECT coalesce(ep->>'dateWatched', '-')
    FROM tvshows, jsonb_array_elements(seasons) s, jsonb_array_elements(s->'episodes') ep
    WHERE tmdb_id = ${tmdbId} AND (s->>'seasonNumber')::int = ${season} AND (ep->>'episodeNumber')::int = ${episode}`);
}

test("7. bring in the Plex history from Setup: a progress bar, then the counts; the missing episode is marked with Plex's date", async () => {
  // alice un-marked S01E04 in her tracker (scenario 3's history sync had marked it); S01E01 and
  // S01E02 stay watched. Plex (the stub's TV Shows section) says she watched S01E01, E02, E04 and
  // S02E01 (a season the tracker does not have).
  psql(`UPDATE tvshows SET seasons = jsonb_set(seasons, '{0,episodes,3}',
    (seasons #> '{0,episodes,3}') || '{"watched": false, "dateWatched": null}') WHERE tmdb_id = 2316`);
  assert.equal(episodeWatched(2316, 1, 4), "false");
  const kept = [1, 2].map((e) => episodeDate(2316, 1, e));
  assert.ok(kept.every((d) => d !== "-"), "S01E01 and S01E02 are watched");

  const page = await newPage();
  await signIn(page);
  await page.getByRole("heading", { name: "Setup" }).waitFor();
  const card = page.locator("#import-card");
  await card.getByRole("heading", { name: "Bring in your Plex history" }).waitFor();
  await assertLabelled(page);
  await card.getByRole("button", { name: "Import my Plex history" }).click();
  // The POST's answer (running) shows the progress bar at once; the page then polls GET.
  await card.locator("progress#import-bar").waitFor({ state: "attached" });
  assert.match(await card.locator(".import-progress").textContent(), /Importing/);
  const result = card.locator(".import-result[data-status=completed]");
  await result.waitFor({ timeout: PROCESSING_MS });
  assert.match(await result.textContent(), /Import finished: 1 episode marked in 1 show\./);
  const count = (name) => result.locator(`dd[data-count=${name}]`).textContent();
  assert.deepEqual(
    [await count("mapped"), await count("autoAdded"), await count("conflicts"), await count("failed"),
      await count("episodesMarked"), await count("alreadyWatched")],
    ["1", "0", "0", "0", "1", "2"]);
  const { import: first } = await api("/api/plex/import");
  assert.equal(first.status, "completed");
  assert.deepEqual(first.counts, { showsTotal: 1, showsDone: 1, mapped: 1, autoAdded: 0, conflicts: 0, failed: 0,
    episodesMarked: 1, alreadyWatched: 2 });
  // The tracker: S01E04 watched on the day Plex recorded; the others keep their own dates.
  assert.equal(episodeDate(2316, 1, 4), new Date(1700172800 * 1000).toISOString());
  assert.deepEqual([1, 2].map((e) => episodeDate(2316, 1, e)), kept);
  assert.equal(episodeWatched(2316, 1, 3), "false", "not watched in Plex");
  await page.screenshot({ path: join(SHOTS, "7-import.png"), fullPage: true });

  // Again: a new import that marks nothing twice.
  await card.getByRole("button", { name: "Import again" }).click();
  await until("the second import's result", async () => {
    const shown = await card.locator(".import-result[data-status=completed]").getAttribute("data-import", { timeout: 1000 }).catch(() => null);
    return shown && Number(shown) !== first.id;
  }, PROCESSING_MS, 500);
  assert.match(await card.locator(".import-result").textContent(), /Import finished: 0 episodes marked in 1 show\./);
  const { import: second } = await api("/api/plex/import");
  assert.deepEqual([second.counts.episodesMarked, second.counts.alreadyWatched], [0, 3]);
  assert.equal(episodeDate(2316, 1, 4), new Date(1700172800 * 1000).toISOString());
  await done(page);
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
