// plexsync admin page: plain DOM code, no framework, no external requests.
// The API token lives in sessionStorage (this tab only); every API call sends it as a bearer
// token to the same origin. Content from the API is always inserted as text, never as HTML.

const TOKEN_KEY = "plexsync.apiToken";
const PAGE_SIZE = 20;
const VIEWS = ["setup", "conflicts", "mappings", "activity"];

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ DOM helpers

/** h("p", {class: "x"}, "text", child) -> element. Strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c));
  return el;
}

function announce(text) {
  const el = $("status");
  el.textContent = "";
  // A fresh text node is announced again even when the text repeats.
  setTimeout(() => { el.textContent = text; }, 30);
}

function showBanner(text, kind = "error") {
  const b = $("banner");
  b.textContent = text;
  b.className = `banner ${kind}`;
  b.setAttribute("role", kind === "error" ? "alert" : "status");
  b.hidden = false;
}

function clearBanner() {
  $("banner").hidden = true;
  $("banner").textContent = "";
}

/** Message box inside a card: kind is "error", "ok" or "info". */
function message(kind, ...content) {
  return h("div", { class: `msg ${kind}`, role: kind === "error" ? "alert" : "status" }, ...content);
}

/** Shown while a list loads (a function's first request can take a moment). */
function loading(el) {
  if (!el.firstChild) el.replaceChildren(h("p", { class: "muted loading" }, "Loading…"));
}

function emptyState(title, ...body) {
  return h("div", { class: "empty" }, h("h2", {}, title), ...body);
}

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : dateFmt.format(d);
}

function ago(iso) {
  const secs = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(secs)) return "";
  if (secs < 60) return "just now";
  if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  return `${Math.round(secs / 86400)} days ago`;
}

function timeEl(iso) {
  return iso ? h("time", { datetime: iso, title: when(iso) }, `${when(iso)} (${ago(iso)})`) : "";
}

function episodeLabel(season, episode) {
  if (episode === null || episode === undefined) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `S${pad(season ?? 0)}E${pad(episode)}`;
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** Disables `button` while `fn` runs (no double submits). */
async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, text, code) {
    super(text);
    this.status = status;
    this.code = code;
  }
}

const STATUS_WORDS = {
  400: "The request was not accepted",
  401: "The API token was not accepted",
  404: "Not found",
  409: "Not possible right now",
  413: "Too large",
  422: "Could not be done",
  429: "Too many requests; wait a moment",
  502: "An outside service (plex.tv, TMDB or your Plex server) did not answer properly",
  503: "plexsync is temporarily unavailable (database or AWS); try again in a moment",
};

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Calls the management API; resolves to the parsed JSON or throws ApiError with words. */
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token() || ""}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, "Could not reach the plexsync API. Check your connection and that the stack is running.");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (resp.status === 401) {
    signOut("Your API token was not accepted. Paste the current token to continue.");
    throw new ApiError(401, STATUS_WORDS[401], "unauthorized");
  }
  if (!resp.ok) {
    const words = STATUS_WORDS[resp.status] || `The API answered ${resp.status}`;
    const detail = data && typeof data.message === "string" ? data.message : "";
    throw new ApiError(resp.status, detail ? `${words}: ${detail}` : `${words}.`, data?.error);
  }
  return data;
}

/** Runs an API action, showing its failure in `where` (an element) or the banner. */
async function attempt(fn, where) {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return undefined;
    const text = e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`;
    if (where) {
      where.replaceChildren(message("error", text));
    } else {
      showBanner(text);
    }
    return undefined;
  }
}

// ------------------------------------------------------------------ sign-in

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  for (const v of VIEWS) $(`view-${v}`).hidden = true;
  clearTimeout(importTimer);
  for (const id of ["setup-summary", "sender-list", "conflict-list", "conflict-results", "mapping-list", "mapping-results",
    "import-status", "log-list", "stats-chart"]) {
    $(id).replaceChildren();
  }
  $("view-login").hidden = false;
  if (reason) showBanner(reason);
  else clearBanner();
  $("api-token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("api-token");
  const value = input.value.trim();
  if (!value) {
    showBanner("Paste your API token first.");
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  const button = event.submitter || $("login-form").querySelector("button");
  const config = await busy(button, () => attempt(() => api("GET", "/api/plex/config")));
  if (!config) {
    input.setAttribute("aria-invalid", "true");
    input.select();
    return;
  }
  input.value = "";
  input.removeAttribute("aria-invalid");
  clearBanner();
  enterApp(config);
}

function enterApp(config) {
  $("view-login").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  if (!VIEWS.includes(location.hash.slice(1))) {
    history.replaceState(null, "", config && !config.configured ? "#setup" : location.hash || "#setup");
  }
  route(config);
}

// ------------------------------------------------------------------ routing

let current = null;

function route(prefetched) {
  if (!token()) {
    signOut();
    return;
  }
  const hash = location.hash.slice(1);
  if (!VIEWS.includes(hash)) return; // e.g. the skip link
  clearBanner();
  current = hash;
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== hash;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === hash) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${hash[0].toUpperCase()}${hash.slice(1)} · plexsync`;
  LOADERS[hash](prefetched);
  refreshBadge();
}

const LOADERS = {
  setup: (prefetched) => loadSetup(prefetched),
  conflicts: () => loadConflicts(),
  mappings: () => loadMappings(),
  activity: () => loadActivity(),
};

async function refreshBadge() {
  const stats = await attempt(() => api("GET", "/api/plex/stats"), h("div"));
  if (stats) setConflictCount(stats.openConflicts);
}

function setConflictCount(n) {
  const badge = $("conflict-badge");
  badge.hidden = !n;
  badge.textContent = n ? String(n) : "";
  badge.setAttribute("aria-label", `${plural(n, "open conflict")}`);
}

// ------------------------------------------------------------------ Setup

async function loadSetup(prefetched) {
  const config = prefetched?.configured !== undefined ? prefetched : await attempt(() => api("GET", "/api/plex/config"));
  if (!config) return;
  renderSetup(config);
  await Promise.all([loadSenders(), loadImport(config)]);
}


// ------------------------------------------------------------------ Import of the Plex history

let importTimer = null;
const IMPORT_POLL_MS = 2000;

/** The import card: offered once Plex is connected; progress while one runs; its result after. */
async function loadImport(config) {
  const card = $("import-card");
  if (!config?.configured) {
    card.hidden = true;
    return;
  }
  let data;
  try {
    data = await api("GET", "/api/plex/import");
  } catch (e) {
    // A stack without the import (or unavailable for a moment): the rest of Setup still works.
    card.hidden = true;
    return;
  }
  card.hidden = false;
  renderImport(data.import);
}

function renderImport(imp) {
  clearTimeout(importTimer);
  const status = $("import-status");
  const form = $("import-form");
  $("import-lead").hidden = Boolean(imp);
  if (!imp) {
    form.hidden = false;
    $("start-import").textContent = "Import my Plex history";
    status.replaceChildren();
    return;
  }
  if (imp.status === "running") {
    form.hidden = true;
    status.replaceChildren(importProgress(imp));
    if (current === "setup") importTimer = setTimeout(pollImport, IMPORT_POLL_MS);
    return;
  }
  form.hidden = false;
  $("start-import").textContent = "Import again";
  status.replaceChildren(importResult(imp));
}

async function pollImport() {
  if (current !== "setup" || !token()) return;
  try {
    const data = await api("GET", "/api/plex/import");
    renderImport(data.import);
    if (data.import && data.import.status !== "running") announce(importHeadline(data.import));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    // Keep what is shown and try again: the import itself goes on without the page.
    importTimer = setTimeout(pollImport, IMPORT_POLL_MS * 3);
  }
}

async function startImport(event) {
  event.preventDefault();
  const status = $("import-status");
  const since = $("import-since").value;
  const body = since ? { watchedSince: since } : {};
  status.replaceChildren(message("info", "Starting the import…"));
  let res;
  try {
    res = await busy($("start-import"), () => api("POST", "/api/plex/import", body));
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      // Already running (another tab started it): show its progress.
      const data = await attempt(() => api("GET", "/api/plex/import"), status);
      if (data) renderImport(data.import);
      return;
    }
    if (!(e instanceof ApiError && e.status === 401)) status.replaceChildren(message("error", e.message));
    return;
  }
  renderImport(res.import);
  announce("Import started");
}

function importCounts(c = {}) {
  const n = (v) => (Number.isFinite(v) ? v.toLocaleString() : "0");
  return h("dl", { class: "facts import-counts" },
    h("dt", {}, "Shows mapped"), h("dd", { "data-count": "mapped" }, n(c.mapped)),
    h("dt", {}, "Shows added from TMDB"), h("dd", { "data-count": "autoAdded" }, n(c.autoAdded)),
    h("dt", {}, "Waiting for your choice"), h("dd", { "data-count": "conflicts" },
      c.conflicts ? h("a", { href: "#conflicts" }, `${n(c.conflicts)} in Conflicts`) : "0"),
    h("dt", {}, "Shows that failed"), h("dd", { "data-count": "failed" }, n(c.failed)),
    h("dt", {}, "Episodes marked"), h("dd", { "data-count": "episodesMarked" }, n(c.episodesMarked)),
    h("dt", {}, "Already watched"), h("dd", { "data-count": "alreadyWatched" }, n(c.alreadyWatched)));
}

function importProgress(imp) {
  const c = imp.counts || {};
  const total = c.showsTotal || 0;
  const done = Math.min(c.showsDone || 0, total);
  const label = total
    ? `Importing: ${done.toLocaleString()} of ${plural(total, "show")} done`
    : "Importing: reading your Plex libraries…";
  return h("div", { class: "import-progress", "data-import": imp.id, "data-status": "running" },
    h("label", { for: "import-bar" }, label),
    // Without a total the bar is indeterminate (no value).
    h("progress", { id: "import-bar", max: String(Math.max(total, 1)), value: total ? String(done) : null }),
    h("p", { class: "help" }, `Started ${when(imp.startedAt)}. You can leave this page: the import goes on.`),
    importCounts(c));
}

function importHeadline(imp) {
  const c = imp.counts || {};
  return imp.status === "completed"
    ? `Import finished: ${plural(c.episodesMarked || 0, "episode")} marked in ${plural(c.showsDone || 0, "show")}.`
    : `The import stopped: ${imp.error || "unknown error"}.`;
}

function importResult(imp) {
  const ok = imp.status === "completed";
  return h("div", { class: "import-result", "data-import": imp.id, "data-status": imp.status },
    message(ok ? "ok" : "error", importHeadline(imp)),
    h("p", { class: "help" }, `${ok ? "Finished" : "Stopped"} ${when(imp.finishedAt)}.`
      + (ok ? " Importing again is safe: nothing is marked twice." : " Importing again carries on safely.")),
    importCounts(imp.counts));
}

// ------------------------------------------------------------------ Jellyfin and Emby

const SENDERS = {
  jellyfin: {
    name: "Jellyfin",
    steps: [
      "Install the Webhook plugin (Dashboard → Plugins → Catalog) and restart Jellyfin.",
      "Dashboard → Plugins → Webhook → Add Generic Destination: paste the URL, tick Playback Stop and User Data Saved, item type Episodes, and Send All Properties.",
      "Finish an episode: it appears under Activity.",
    ],
  },
  emby: {
    name: "Emby",
    steps: [
      "Emby → Settings → Notifications → Add Notification → Webhooks (needs Emby Premiere).",
      "Paste the URL, content type application/json, events Playback → Stop and Users → Mark Played.",
      "Finish an episode: it appears under Activity.",
    ],
  },
};

async function loadSenders() {
  const list = $("sender-list");
  const data = await attempt(() => api("GET", "/api/senders"), list);
  if (!data) return;
  list.replaceChildren(...data.senders.filter((v) => SENDERS[v.sender]).map(senderForm));
}

/** One sender: account fields, a save button, and once saved its webhook URL and steps. */
function senderForm(view) {
  const { name, steps } = SENDERS[view.sender];
  const id = (field) => `${view.sender}-${field}`;
  const feedback = h("div", { class: "feedback", id: id("feedback") });
  const form = h("form", { class: "sender", id: id("form"), "aria-labelledby": id("title"), novalidate: true },
    h("h3", { id: id("title") }, name, " ",
      view.configured && view.enabled ? h("span", { class: "pill ok" }, "Enabled") : h("span", { class: "pill" }, "Off")),
    h("label", { for: id("account") }, `Your ${name} user name or user id`),
    h("input", { id: id("account"), type: "text", spellcheck: "false", required: true, maxlength: "100", value: view.account || "" }),
    h("label", { for: id("allowed") }, "Household accounts ", h("span", { class: "optional" }, "(optional)")),
    h("input", { id: id("allowed"), type: "text", spellcheck: "false", placeholder: "bob, carol",
      value: (view.allowedAccounts || []).join(", ") }),
    h("div", { class: "switch" },
      h("input", { id: id("enabled"), type: "checkbox", role: "switch", checked: view.configured ? view.enabled : true }),
      h("label", { for: id("enabled") }, `Sync plays from ${name}`)),
    h("div", { class: "form-actions" }, h("button", { type: "submit", id: id("save") }, `Save ${name}`)),
    feedback,
    view.webhookUrl ? senderUrl(view, name, steps) : null,
  );
  form.addEventListener("submit", (e) => saveSender(e, view.sender, name));
  return form;
}

function senderUrl(view, name, steps) {
  const inputId = `${view.sender}-webhook-url`;
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", () => copyText(inputId, copy, `${name} webhook URL`));
  return h("div", { class: "sender-url" },
    h("div", { class: "copy-row" },
      h("label", { for: inputId, class: "visually-hidden" }, `${name} webhook URL`),
      h("input", { id: inputId, type: "text", readonly: true, spellcheck: "false", value: view.webhookUrl }),
      copy),
    h("ol", { class: "steps" }, steps.map((step) => h("li", {}, step))));
}

async function saveSender(event, sender, name) {
  event.preventDefault();
  const account = $(`${sender}-account`);
  const feedback = $(`${sender}-feedback`);
  if (!account.value.trim()) {
    account.setAttribute("aria-invalid", "true");
    feedback.replaceChildren(message("error", `Enter your ${name} user name or user id.`));
    account.focus();
    return;
  }
  account.removeAttribute("aria-invalid");
  const body = {
    account: account.value.trim(),
    enabled: $(`${sender}-enabled`).checked,
    allowedAccounts: $(`${sender}-allowed`).value.split(",").map((a) => a.trim()).filter(Boolean),
  };
  const saved = await busy($(`${sender}-save`), () => attempt(() => api("PUT", `/api/senders/${sender}`, body), feedback));
  if (!saved) return;
  const form = senderForm(saved);
  $(`${sender}-form`).replaceWith(form);
  const text = `Saved. Paste the ${name} webhook URL into ${name}.`;
  $(`${sender}-feedback`).replaceChildren(message("ok", text));
  announce(text);
  $(`${sender}-webhook-url`)?.focus();
}

function renderSetup(config) {
  const summary = $("setup-summary");
  if (!config.configured) {
    summary.replaceChildren(
      h("h2", {}, "Welcome! Let's connect your Plex server."),
      h("p", {}, "Enter your Plex token below and save. plexsync checks it with plex.tv, finds your server and gives you a webhook URL to paste into Plex."),
    );
  } else {
    const state = config.enabled
      ? h("span", { class: "pill ok" }, "Syncing")
      : h("span", { class: "pill warn" }, "Disabled");
    summary.replaceChildren(
      h("h2", {}, "Connected ", state),
      h("dl", { class: "facts" },
        h("dt", {}, "Plex server"), h("dd", { id: "server-name" }, config.serverName || "unknown (set the address below)"),
        config.serverUrl ? [h("dt", {}, "Server address"), h("dd", {}, config.serverUrl)] : null,
        h("dt", {}, "Plex account"), h("dd", {}, config.plexAccountName || "–"),
        h("dt", {}, "Last webhook received"),
        h("dd", { id: "last-webhook" }, config.lastWebhookReceived ? timeEl(config.lastWebhookReceived)
          : "None yet. Add the webhook URL in Plex, then finish an episode."),
      ),
    );
  }
  $("webhook-card").hidden = !config.webhookUrl;
  $("webhook-url").value = config.webhookUrl || "";
  $("webhook-local-note").hidden = !isLoopback(config.webhookUrl);
  $("disable-card").hidden = !(config.configured && config.enabled);
  $("setup-form-title").textContent = config.configured ? "Change settings" : "Connect Plex";
  // A stored token is kept by a save that leaves the field empty; only a new one replaces it.
  const tokenInput = $("plex-token");
  tokenInput.required = !config.plexTokenSet;
  tokenInput.dataset.stored = config.plexTokenSet ? "true" : "";
  tokenInput.placeholder = config.plexTokenSet ? "Saved (leave empty to keep it)" : "";
  $("plex-token-state").textContent = config.plexTokenSet
    ? "A Plex token is saved (encrypted; it is never shown). Leave this empty to keep it, or enter a new one to replace it."
    : "Checked with plex.tv and stored encrypted; it is never shown again.";
  $("enabled").checked = config.configured ? config.enabled : true;
  $("auto-mark").checked = config.autoMarkWatched;
  $("auto-add").checked = config.autoAddShows;
  $("server-url").value = config.serverUrl || "";
  $("allow-unencrypted").checked = Boolean(config.allowInsecureHttp);
  $("allowed-accounts").value = (config.allowedAccounts || []).join(", ");
}

/** A URL only this machine can reach (make dev's 127.0.0.1): Plex elsewhere cannot post to it. */
function isLoopback(url) {
  try {
    return ["127.0.0.1", "localhost", "[::1]"].includes(new URL(url).hostname);
  } catch {
    return false;
  }
}

function parseAccounts(text) {
  return text.split(",").map((a) => a.trim()).filter(Boolean)
    .map((a) => (/^\d+$/.test(a) ? Number(a) : a));
}

async function saveSetup(event, { rotate = false } = {}) {
  event?.preventDefault();
  const tokenInput = $("plex-token");
  const feedback = setupFeedback();
  const plexToken = tokenInput.value.trim();
  // Empty keeps the stored token (when there is one); the API then checks that one with plex.tv.
  const keepStored = !plexToken && tokenInput.dataset.stored === "true";
  if (!keepStored && plexToken.length < 20) {
    tokenInput.setAttribute("aria-invalid", "true");
    feedback.replaceChildren(message("error", plexToken
      ? "That Plex token looks too short: Plex tokens are 20 characters or more."
      : "Enter your Plex token to connect Plex."));
    tokenInput.focus();
    return;
  }
  tokenInput.removeAttribute("aria-invalid");
  const body = {
    enabled: $("enabled").checked,
    autoMarkWatched: $("auto-mark").checked,
    autoAddShows: $("auto-add").checked,
    allowedAccounts: parseAccounts($("allowed-accounts").value),
  };
  if (!keepStored) body.plexToken = plexToken;
  const url = $("server-url").value.trim();
  if (url) body.plexServerUrl = url;
  if ($("allow-unencrypted").checked) body.allowInsecureHttp = true;
  if (rotate) body.rotateWebhookSecret = true;
  feedback.replaceChildren(message("info", keepStored ? "Saving (checking the saved token with plex.tv)…" : "Checking the token with plex.tv…"));
  const saved = await busy($("save-setup"), () => attempt(() => api("POST", "/api/plex/config", body).catch((e) => {
    throw e instanceof ApiError ? new ApiError(e.status, inFormWords(e.message), e.code) : e;
  }), feedback));
  if (!saved) {
    feedback.querySelector(".msg.error") && tokenInput.focus();
    return;
  }
  tokenInput.value = "";
  const config = await attempt(() => api("GET", "/api/plex/config"), feedback);
  if (config) {
    renderSetup(config);
    loadImport(config);
  } else {
    $("webhook-url").value = saved.webhookUrl;
  }
  $("webhook-card").hidden = false;
  const server = saved.serverName || "your Plex server";
  const text = rotate
    ? "Saved. The webhook secret was rotated: paste the new URL into Plex."
    : keepStored ? `Saved. Still connected to ${server} with your saved Plex token.`
      : `Saved. Connected to ${server}. Now paste the webhook URL into Plex.`;
  setupFeedback().replaceChildren(message("ok", text));
  announce(text);
  if (keepStored && !rotate) return; // the webhook URL did not change: nothing new to copy
  $("webhook-url").focus();
  $("webhook-url").select();
}

/** The API names its fields; on the page they are the form's labels. */
function inFormWords(text) {
  return text
    .replace(/set allowInsecureHttp: true/g, "switch on “Allow a plain http address”")
    .replace(/(pass|use) (its|the server's) https (plexServerUrl|address)/g, "enter its https address under “Plex server address”")
    .replace(/\bplexServerUrl\b/g, "the Plex server address")
    .replace(/\bplexToken\b/g, "the Plex token");
}

function setupFeedback() {
  let el = $("setup-feedback");
  if (!el) {
    el = h("div", { id: "setup-feedback", class: "feedback" });
    $("setup-form").querySelector(".form-actions").after(el);
  }
  return el;
}

function copyWebhook() {
  return copyText("webhook-url", $("copy-webhook"), "Webhook URL");
}

async function copyText(inputId, button, what) {
  const input = $(inputId);
  input.select();
  let ok = false;
  try {
    await navigator.clipboard.writeText(input.value);
    ok = true;
  } catch {
    ok = document.execCommand?.("copy") ?? false;
  }
  button.textContent = ok ? "Copied" : "Copy failed: select and copy";
  announce(ok ? `${what} copied` : "Could not copy; the URL is selected, copy it with your keyboard");
  setTimeout(() => { button.textContent = "Copy"; }, 2500);
}

async function rotateSecret() {
  if (!confirm("Rotate the webhook secret? The current webhook URL stops working until you paste the new one into Plex.")) return;
  await saveSetup(null, { rotate: true });
}

async function disableSync() {
  if (!confirm("Disable syncing? Plays are no longer marked until you enable it again.")) return;
  const feedback = h("div");
  $("disable-card").append(feedback);
  const done = await busy($("disable"), () => attempt(() => api("DELETE", "/api/plex/config"), feedback));
  if (!done) return;
  await loadSetup();
  showBanner("Syncing is disabled. Turn on “Sync enabled” and save to start again.", "info");
  announce("Syncing disabled");
}

// ------------------------------------------------------------------ Conflicts

const CONFLICT_TYPES = {
  multiple_matches: "Several shows could match",
  no_match: "No matching show found",
  ambiguous: "Ambiguous match",
};

const conflictPager = pager("conflict-pager", () => loadConflicts());

async function loadConflicts() {
  const list = $("conflict-list");
  loading(list);
  const data = await attempt(() => api("GET", `/api/plex/conflicts?limit=${PAGE_SIZE}${conflictPager.query()}`), list);
  if (!data) return;
  conflictPager.update(data.nextCursor);
  for (const c of data.conflicts) conflictTitles.set(c.id, conflictTitle(c));
  $("conflict-bulk").hidden = !data.conflicts.length;
  $("conflict-select-all").checked = false;
  if (!data.conflicts.length) {
    list.replaceChildren(emptyState("No open conflicts",
      h("p", {}, "When plexsync cannot tell which show a Plex title is — say two shows called “The Office” — it asks you here, and the episodes wait until you choose."),
      h("p", {}, "Nothing to do right now. Recent plays are under ", h("a", { href: "#activity" }, "Activity"), ".")));
    return;
  }
  list.replaceChildren(...data.conflicts.map(conflictCard));
  updateConflictSelection();
}

function conflictTitle(c) {
  return `${c.plexTitle}${c.plexYear ? ` (${c.plexYear})` : ""}`;
}

function conflictCard(c) {
  const card = h("article", { class: "card conflict", "aria-labelledby": `conflict-${c.id}-title`, "data-conflict": c.id });
  const feedback = h("div", { class: "feedback" });
  const resolve = (body, button) => resolveConflict(c, body, button, card, feedback);
  const title = conflictTitle(c);
  const matches = [...(c.potentialMatches || [])].sort((a, b) => (b.matchScore ?? 0) - (a.matchScore ?? 0));
  const rows = matches.map((m) => {
    const inTracker = m.tvshowId !== null && m.tvshowId !== undefined;
    const name = `${m.title}${m.tmdbId ? ` · TMDB ${m.tmdbId}` : ""}`;
    const action = inTracker
      ? h("button", { type: "button", class: "primary", onclick: (e) => resolve({ action: "select", tvshowId: m.tvshowId }, e.currentTarget) },
        "Use this show", h("span", { class: "visually-hidden" }, `: ${name}`))
      : m.tmdbId
        ? h("button", { type: "button", onclick: (e) => resolve({ action: "create_new", createNew: { tmdbId: m.tmdbId } }, e.currentTarget) },
          "Add from TMDB", h("span", { class: "visually-hidden" }, `: ${name}`))
        : "";
    return h("tr", {},
      h("td", { "data-label": "Show" }, h("strong", {}, m.title), m.tmdbId ? h("span", { class: "muted" }, ` TMDB ${m.tmdbId}`) : ""),
      h("td", { "data-label": "Where" }, inTracker ? h("span", { class: "pill ok" }, "In your tracker") : h("span", { class: "pill" }, "TMDB")),
      h("td", { "data-label": "Score" }, scoreMeter(m.matchScore)),
      h("td", { class: "actions" }, action));
  });
  const tmdbInput = h("input", { id: `tmdb-${c.id}`, type: "number", min: "1", inputmode: "numeric", required: true });
  const createForm = h("form", { class: "inline-form", novalidate: true, onsubmit: (e) => {
    e.preventDefault();
    const id = Number(tmdbInput.value);
    if (!Number.isInteger(id) || id < 1) {
      feedback.replaceChildren(message("error", "Enter a TMDB show id: the number in the show's themoviedb.org address."));
      tmdbInput.focus();
      return;
    }
    resolve({ action: "create_new", createNew: { tmdbId: id } }, e.submitter || e.currentTarget.querySelector("button"));
  } },
  h("label", { for: `tmdb-${c.id}` }, "Another show by TMDB id"), tmdbInput,
  h("button", { type: "submit" }, "Add from TMDB"));
  const ignore = h("button", { type: "button", class: "danger-outline", onclick: (e) => {
    if (confirm(`Ignore “${title}”? Its plays will not be marked (sync is turned off for it).`)) resolve({ action: "ignore" }, e.currentTarget);
  } }, "Ignore this show");
  card.append(
    h("header", { class: "card-head" },
      h("span", { class: "check pick" },
        h("input", { id: `pick-${c.id}`, type: "checkbox", value: String(c.id), onchange: updateConflictSelection }),
        h("label", { for: `pick-${c.id}` }, "Select", h("span", { class: "visually-hidden" }, ` ${title}`))),
      h("h2", { id: `conflict-${c.id}-title` }, title),
      h("span", { class: "pill warn" }, CONFLICT_TYPES[c.conflictType] || c.conflictType)),
    h("p", { class: "muted" },
      c.pendingEvents ? `${plural(c.pendingEvents, "play")} waiting` : "No plays waiting",
      " · seen ", timeEl(c.createdAt)),
    matches.length
      ? h("table", { class: "table candidates" },
        h("caption", { class: "visually-hidden" }, `Candidates for ${title}`),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Candidate"), h("th", { scope: "col" }, "Where"), h("th", { scope: "col" }, "Score"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Action")))),
        h("tbody", {}, rows))
      : h("p", {}, "No candidates were found. Add the show by its TMDB id, or ignore it."),
    h("div", { class: "conflict-actions" }, createForm, ignore),
    feedback,
  );
  return card;
}

// Several conflicts in one request (POST /api/plex/conflicts/bulk).

/** Titles of the conflicts seen on screen, to name them in a bulk result. */
const conflictTitles = new Map();

function conflictPicks() {
  return [...document.querySelectorAll("#conflict-list .pick input")];
}

function updateConflictSelection() {
  const picks = conflictPicks();
  const n = picks.filter((p) => p.checked).length;
  const ignore = $("ignore-selected");
  ignore.disabled = n === 0;
  ignore.textContent = n ? `Ignore ${plural(n, "selected show")}` : "Ignore selected";
  const all = $("conflict-select-all");
  all.checked = n > 0 && n === picks.length;
  all.indeterminate = n > 0 && n < picks.length;
}

async function acceptTop(event) {
  event.preventDefault();
  const input = $("accept-min-score");
  const pct = Number(input.value);
  if (!Number.isInteger(pct) || pct < 1 || pct > 100) {
    input.setAttribute("aria-invalid", "true");
    $("conflict-results").replaceChildren(message("error", "Enter a score from 1 to 100."));
    input.focus();
    return;
  }
  input.removeAttribute("aria-invalid");
  if (!confirm(`Map every open conflict whose best candidate scores ${pct}% or more to that candidate?`)) return;
  await resolveInBulk($("accept-top"), { action: "accept_top", minScore: pct / 100 });
}

async function ignoreSelected(event) {
  const ids = conflictPicks().filter((p) => p.checked).map((p) => Number(p.value));
  if (!ids.length) return;
  if (!confirm(`Ignore ${plural(ids.length, "show")}? Their plays will not be marked (sync is turned off for them).`)) return;
  await resolveInBulk(event.currentTarget, { action: "ignore", ids });
}

async function resolveInBulk(button, body) {
  const box = $("conflict-results");
  box.replaceChildren(message("info", "Resolving and replaying the waiting plays…"));
  const res = await busy(button, () => attempt(() => api("POST", "/api/plex/conflicts/bulk", body), box));
  if (!res) return;
  const card = bulkResult(res, body);
  box.replaceChildren(card);
  card.focus();
  announce(bulkHeadline(res.summary));
  await loadConflicts();
  refreshBadge();
}

function bulkHeadline(s) {
  const parts = [];
  if (s.resolved) parts.push(`${plural(s.resolved, "show")} mapped`);
  if (s.ignored) parts.push(`${plural(s.ignored, "show")} ignored`);
  if (s.skipped) parts.push(`${s.skipped} left for you`);
  if (s.error) parts.push(`${s.error} failed`);
  if (s.notProcessed) parts.push(`${s.notProcessed} not reached yet`);
  return parts.length ? `${parts.join(", ")}.` : "No open conflict has a best candidate scoring that high.";
}

function bulkItemText(r) {
  switch (r.status) {
    case "resolved": {
      const target = r.createdShow
        ? `${r.createdShow.title} (${r.createdShow.created ? "added from" : "already in your tracker,"} TMDB ${r.createdShow.tmdbId})`
        : `tracker show #${r.tvshowId}`;
      const rp = r.replay || {};
      const plays = rp.marked ? `${plural(rp.marked, "waiting play")} marked` : "no waiting play marked";
      const queued = rp.queued ? `; ${rp.queued} queued, marked shortly` : "";
      const rest = queued + (rp.stillPending ? `; ${rp.stillPending} could not be queued (replay them from Activity)` : "");
      return `mapped to ${target}; ${plays}${rest}.`;
    }
    case "ignored": return "ignored.";
    case "skipped": return `left for you: ${r.message}.`;
    case "not_processed": return "not reached in time; continue below.";
    default: return `not resolved: ${r.message}`;
  }
}

const BULK_PILL = { resolved: ["ok", "Mapped"], ignored: ["", "Ignored"], skipped: ["warn", "Left for you"],
  not_processed: ["warn", "Not reached"], error: ["bad", "Failed"] };

function bulkResult(res, body) {
  const s = res.summary;
  const bad = s.error > 0 || s.notProcessed > 0;
  const card = h("article", { class: "card result bulk-result", tabindex: "-1" },
    h("h2", {}, body.action === "ignore" ? "Ignored" : "Best matches accepted"),
    message(bad ? "info" : "ok", bulkHeadline(s)),
    res.results.length
      ? h("ul", { class: "bulk-items" }, res.results.map((r) => {
        const [cls, word] = BULK_PILL[r.status] || BULK_PILL.error;
        return h("li", { "data-conflict-result": r.id, "data-status": r.status },
          h("span", { class: `pill ${cls}` }, word), " ",
          h("strong", {}, conflictTitles.get(r.id) || `Conflict #${r.id}`), ` ${bulkItemText(r)}`);
      }))
      : null);
  if (s.notProcessed) {
    // The request stops starting conflicts before API Gateway's 30 s; the rest need another.
    const rest = body.action === "ignore"
      ? { action: "ignore", ids: res.results.filter((r) => r.status === "not_processed").map((r) => r.id) }
      : body;
    card.append(h("button", { type: "button", class: "primary", onclick: (e) => resolveInBulk(e.currentTarget, rest) },
      `Continue with the ${plural(s.notProcessed, "remaining show")}`));
  }
  return card;
}

function scoreMeter(score) {
  if (score === null || score === undefined) return "–";
  const pct = Math.round(score * 100);
  return h("span", { class: "score" },
    h("meter", { min: "0", max: "100", value: String(pct), "aria-hidden": "true" }),
    ` ${pct}%`);
}

async function resolveConflict(c, body, button, card, feedback) {
  feedback.replaceChildren(message("info", "Resolving and replaying the waiting plays…"));
  const res = await busy(button, () => attempt(() => api("POST", `/api/plex/conflicts/${c.id}/resolve`, body), feedback));
  if (!res) return;
  const target = res.createdShow
    ? `${res.createdShow.title} (${res.createdShow.created ? "added from" : "already in your tracker,"} TMDB ${res.createdShow.tmdbId})`
    : res.action === "ignore" ? null : `tracker show #${res.tvshowId}`;
  const title = `${c.plexTitle}${c.plexYear ? ` (${c.plexYear})` : ""}`;
  const head = res.action === "ignore" ? `“${title}” is ignored.` : `“${title}” is now mapped to ${target}.`;
  const result = h("article", { class: "card result", "data-resolved": c.id, tabindex: "-1" },
    h("h2", {}, "Resolved"), message("ok", head), replaySummary(res.replay),
    h("p", {}, h("a", { href: "#mappings" }, "See all shows")));
  card.replaceWith(result);
  result.focus();
  announce(`${head} ${replayText(res.replay)}`);
  refreshBadge();
}

function replayText(r) {
  if (!r || !r.pending) return "No plays were waiting.";
  const parts = [];
  if (r.marked) parts.push(`marked ${r.markedEpisodes.join(", ") || plural(r.marked, "episode")}`);
  if (r.alreadyWatched) parts.push(`${r.alreadyWatched} already watched`);
  if (r.duplicate) parts.push(`${r.duplicate} duplicate`);
  if (r.ignored) parts.push(`${r.ignored} ignored`);
  if (r.failed) parts.push(`${r.failed} failed`);
  if (r.stillPending) parts.push(`${r.stillPending} could not be queued (replay them from Activity)`);
  if (r.queued) parts.push(`${r.queued} queued (not replayed here; marked shortly, see Activity)`);
  return `Replayed ${plural(r.replayed, "waiting play")}: ${parts.join("; ") || "nothing changed"}.`;
}

function replaySummary(r) {
  const box = h("div", { class: "replay" }, h("p", { class: "replay-text" }, replayText(r)));
  if (r?.markedEpisodes?.length) {
    box.append(h("ul", { class: "marked" }, r.markedEpisodes.map((e) => h("li", {}, h("span", { class: "pill ok" }, "Marked"), ` ${e}`))));
  }
  const problems = (r?.events || []).filter((e) => e.status !== "success");
  if (problems.length) {
    box.append(h("ul", { class: "problems" }, problems.map((e) =>
      h("li", {}, `${episodeLabel(e.season, e.episode) || `Play ${e.pendingEventId}`}: ${STATUS_NAMES[e.status] || e.status}${e.reason ? ` — ${e.reason}` : ""}`))));
  }
  if (r?.note) box.append(h("p", { class: "muted" }, r.note));
  return box;
}

// ------------------------------------------------------------------ Mappings

const mappingPager = pager("mapping-pager", () => loadMappings());
let mappingFilter = "all";

async function loadMappings() {
  const list = $("mapping-list");
  loading(list);
  const filter = mappingFilter === "all" ? "" : `&${mappingFilter}=true`;
  const data = await attempt(() => api("GET", `/api/plex/mappings?limit=${PAGE_SIZE}${filter}${mappingPager.query()}`), list);
  if (!data) return;
  mappingPager.update(data.nextCursor);
  rememberTrackerShows(data.mappings);
  $("mapping-bulk").hidden = !data.mappings.some((m) => m.id !== null);
  if (!data.mappings.length) {
    const text = {
      all: ["No Plex shows yet", "A show appears here after its first webhook: finish an episode in Plex, or add a show to your Plex library."],
      unmapped: ["Every show is mapped", "All Plex shows plexsync has seen are linked to a tracker show."],
      conflicts: ["No show has an open conflict", "Shows waiting for your choice would be listed here (and under Conflicts)."],
    }[mappingFilter];
    list.replaceChildren(emptyState(text[0], h("p", {}, text[1])));
    return;
  }
  const table = h("table", { class: "table mappings" },
    h("caption", { class: "visually-hidden" }, "Plex shows and their tracker shows"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col", class: "pick-cell" },
        h("input", { id: "mapping-select-all", type: "checkbox", "aria-label": "Select every show on this page",
          onchange: (e) => { for (const p of mappingPicks()) p.checked = e.currentTarget.checked; updateMappingSelection(); } })),
      h("th", { scope: "col" }, "Plex show"), h("th", { scope: "col" }, "Tracker show"),
      h("th", { scope: "col" }, "Match"), h("th", { scope: "col" }, "Sync"),
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    h("tbody", {}, data.mappings.flatMap(mappingRows)));
  list.replaceChildren(table);
  updateMappingSelection();
}

function mappingPicks() {
  return [...document.querySelectorAll("#mapping-list td.pick-cell input")];
}

function updateMappingSelection() {
  const picks = mappingPicks();
  const n = picks.filter((p) => p.checked).length;
  $("mapping-selected").textContent = n ? `${plural(n, "show")} selected` : "None selected";
  $("mappings-sync-on").disabled = n === 0;
  $("mappings-sync-off").disabled = n === 0;
  const all = $("mapping-select-all");
  if (all) {
    all.checked = n > 0 && n === picks.length;
    all.indeterminate = n > 0 && n < picks.length;
  }
}

/** Sync on or off for the selected shows (POST /api/plex/mappings/bulk), one result each. */
async function switchMappingsSync(on, button) {
  const picks = mappingPicks().filter((p) => p.checked);
  const ids = picks.map((p) => Number(p.value));
  if (!ids.length) return;
  if (!on && !confirm(`Stop syncing ${plural(ids.length, "show")}? Their mappings are kept.`)) return;
  const box = $("mapping-results");
  box.replaceChildren();
  const res = await busy(button, () => attempt(() => api("POST", "/api/plex/mappings/bulk", { ids, syncEnabled: on }), box));
  if (!res) return;
  const titles = new Map(picks.map((p) => [Number(p.value), p.dataset.title]));
  const count = (status) => res.results.filter((r) => r.status === status).length;
  const failed = res.results.filter((r) => r.status === "error");
  const parts = [`Sync turned ${on ? "on" : "off"} for ${plural(count("updated"), "show")}`];
  if (count("unchanged")) parts.push(`${count("unchanged")} already ${on ? "on" : "off"}`);
  if (failed.length) parts.push(`${failed.length} not changed`);
  const text = `${parts.join("; ")}.`;
  box.replaceChildren(message(failed.length ? "error" : "ok", text,
    failed.length ? h("ul", {}, failed.map((r) => h("li", {}, `${titles.get(r.id) || `Mapping #${r.id}`}: ${r.message}`))) : null));
  announce(text);
  await loadMappings();
}

const trackerShows = new Map();
function rememberTrackerShows(mappings) {
  for (const m of mappings) if (m.tvshowId) trackerShows.set(m.tvshowId, m.tvshowTitle || `#${m.tvshowId}`);
  $("tracker-shows").replaceChildren(...[...trackerShows].map(([id, t]) => h("option", { value: String(id) }, t)));
}

const METHODS = {
  tmdb_id: "TMDB id", tvdb_id: "TVDB id", imdb_id: "IMDb id", tmdb_search: "title search, confirmed",
  manual: "chosen by you", user: "chosen by you", user_selected: "chosen by you",
  user_created_new: "added from TMDB by you", fuzzy: "title match", auto_added: "added automatically",
};

/** "auto_added:tmdb_id" -> "added automatically · TMDB id". */
function matchMethod(method) {
  return method.split(":").map((part) => METHODS[part] || part.replaceAll("_", " ")).join(" · ");
}

function mappingRows(m) {
  const title = `${m.plexTitle}${m.plexYear ? ` (${m.plexYear})` : ""}`;
  const detail = h("tr", { class: "detail", hidden: true }, h("td", { colspan: "6" }));
  const showDetail = (...content) => {
    detail.hidden = false;
    detail.firstChild.replaceChildren(...content);
  };
  const actions = h("td", { class: "actions" });
  if (m.id === null) {
    // Only in a conflict so far (the Conflicts filter lists those too): no mapping to change yet.
    actions.append(h("a", { href: "#conflicts" }, "Choose in Conflicts", h("span", { class: "visually-hidden" }, `: ${title}`)));
  } else if (m.tvshowId && m.syncEnabled) {
    actions.append(h("button", { type: "button", onclick: (e) => syncHistory(m, e.currentTarget, showDetail) },
      "Sync watch history", h("span", { class: "visually-hidden" }, ` of ${title}`)));
  }
  if (m.id !== null) actions.append(h("button", { type: "button", onclick: () => showDetail(confirmForm(m, title, showDetail)) },
    m.tvshowId ? "Map to another show" : "Map to a show", h("span", { class: "visually-hidden" }, `: ${title}`)));
  if (m.id !== null && m.syncEnabled) {
    actions.append(h("button", { type: "button", class: "danger-outline", onclick: (e) => disableMapping(m, title, e.currentTarget, showDetail) },
      "Disable sync", h("span", { class: "visually-hidden" }, ` for ${title}`)));
  }
  const tracker = m.tvshowId
    ? [h("strong", {}, m.tvshowTitle || "–"), h("span", { class: "muted" }, ` #${m.tvshowId}`)]
    : m.conflictId ? h("a", { href: "#conflicts" }, "Waiting in Conflicts") : h("span", { class: "muted" }, "Not mapped");
  const match = m.matchMethod
    ? `${matchMethod(m.matchMethod)}${m.matchConfidence !== null && m.matchConfidence !== undefined ? ` · ${Math.round(m.matchConfidence * 100)}%` : ""}${m.manuallyConfirmed ? " · confirmed" : ""}`
    : "–";
  const pick = m.id === null ? ""
    : h("input", { type: "checkbox", value: String(m.id), "data-title": title, "aria-label": `Select ${title}`,
      onchange: updateMappingSelection });
  const row = h("tr", { "data-mapping": m.id, "data-plex-key": m.plexRatingKey },
    h("td", { class: "pick-cell" }, pick),
    h("td", { "data-label": "Plex show" }, h("strong", {}, title),
      m.tmdbId ? h("div", { class: "muted small" }, `TMDB ${m.tmdbId}`) : ""),
    h("td", { "data-label": "Tracker show" }, tracker),
    h("td", { "data-label": "Match" }, match),
    h("td", { "data-label": "Sync" }, m.syncEnabled ? h("span", { class: "pill ok" }, "On") : h("span", { class: "pill" }, "Off")),
    actions);
  return [row, detail];
}

function confirmForm(m, title, showDetail) {
  const id = `confirm-${m.id}`;
  const input = h("input", { id, type: "number", min: "1", inputmode: "numeric", list: "tracker-shows", required: true });
  const form = h("form", { class: "inline-form", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const tvshowId = Number(input.value);
    if (!Number.isInteger(tvshowId) || tvshowId < 1) {
      showDetail(form, message("error", "Enter the tracker show's id (a number; known shows are suggested)."));
      input.focus();
      return;
    }
    const feedback = h("div");
    const res = await busy(e.submitter || form.querySelector("button"),
      () => attempt(() => api("POST", `/api/plex/mappings/${m.id}/confirm`, { tvshowId }), feedback));
    if (!res) {
      showDetail(form, feedback);
      return;
    }
    await loadMappings();
    showBanner(`“${title}” is now mapped to ${res.mapping.tvshowTitle || `tracker show #${tvshowId}`}.`, "ok");
    announce(`${title} mapped`);
  } },
  h("label", { for: id }, `Tracker show id for ${title}`), input,
  h("button", { type: "submit", class: "primary" }, "Confirm"));
  setTimeout(() => input.focus(), 0);
  return form;
}

async function syncHistory(m, button, showDetail) {
  showDetail(message("info", "Reading the watch history from your Plex server…"));
  const feedback = h("div");
  const r = await busy(button, () => attempt(() => api("POST", `/api/plex/mappings/${m.id}/sync`), feedback));
  if (!r) {
    showDetail(feedback);
    return;
  }
  const text = `Watched in Plex: ${r.watchedInPlex}. Newly marked: ${r.marked}${r.markedEpisodes.length ? ` (${r.markedEpisodes.join(", ")})` : ""}. Already watched: ${r.alreadyWatched}. Not in the tracker: ${r.notInTracker}.`;
  showDetail(message("ok", text));
  announce(text);
}

async function disableMapping(m, title, button, showDetail) {
  if (!confirm(`Stop syncing “${title}”? The mapping is kept.`)) return;
  const feedback = h("div");
  const res = await busy(button, () => attempt(() => api("DELETE", `/api/plex/mappings/${m.id}`), feedback));
  if (!res) {
    showDetail(feedback);
    return;
  }
  await loadMappings();
  showBanner(`Sync is off for “${title}”.`, "ok");
}

// ------------------------------------------------------------------ Activity

const STATUS_NAMES = {
  success: "Done", failed: "Failed", ignored: "Ignored", duplicate: "Duplicate",
  needs_resolution: "Waiting for you", pending: "Pending",
};
const STATUS_CLASS = { success: "ok", failed: "bad", needs_resolution: "warn" };
const ACTIONS = {
  marked_watched: "Marked watched",
  auto_added_show_and_marked_watched: "Added the show and marked watched",
  auto_added_show: "Added the show",
  already_watched: "Already watched",
  show_mapped: "Show mapped",
  show_already_mapped: "Show already mapped",
  needs_user_input: "Waiting for your choice",
  ignored: "Ignored",
  duplicate: "Already received",
};

const logPager = pager("log-pager", () => loadLogs());

async function loadActivity() {
  await Promise.all([loadStats(), loadLogs(), loadDeadLetters()]);
}

/** Events that kept failing (database, TMDB or Plex down) until SQS moved them to the DLQ. */
async function loadDeadLetters() {
  const box = $("dead-letters");
  const data = await attempt(() => api("GET", "/api/plex/dead-letters?limit=10"), box);
  if (!data) return;
  const count = Math.max(data.approximateTotal ?? 0, data.deadLetters.length);
  $("dead-letter-count").textContent = String(count);
  if (!count) {
    box.replaceChildren(h("p", { class: "muted" }, "Empty: nothing has failed for good."));
    return;
  }
  const feedback = h("div", { class: "feedback" });
  const redrive = h("button", { type: "button", onclick: async (e) => {
    const res = await busy(e.currentTarget, () => attempt(() => api("POST", "/api/plex/dead-letters/redrive"), feedback));
    if (!res) return;
    const text = `Moved ${plural(res.moved, "event")} back to the queue; they are processed again in a moment.`;
    feedback.replaceChildren(message("ok", text));
    announce(text);
  } }, "Process them again");
  box.replaceChildren(
    h("p", {}, `${plural(count, "event")} failed repeatedly and wait here. Their errors are in the log below.`),
    h("ul", { class: "dead-list" }, data.deadLetters.map((d) => h("li", {},
      d.event ? `${d.event.plexTitle} ${episodeLabel(d.event.season, d.event.episode)}`.trim() : "An unreadable message",
      h("span", { class: "muted" }, d.receiveCount ? ` · tried ${d.receiveCount} times` : "")))),
    redrive, feedback);
}

async function loadStats() {
  const chart = $("stats-chart");
  const stats = await attempt(() => api("GET", "/api/plex/stats"), chart);
  if (!stats) return;
  $("open-conflicts").textContent = String(stats.openConflicts);
  setConflictCount(stats.openConflicts);
  chart.replaceChildren(statsChart(stats.days));
}

/** Per-day bars (done / failed / other) for the last 7 days, oldest on the left. */
function statsChart(days) {
  const byDate = new Map(days.map((d) => [d.date, d]));
  const today = new Date();
  const series = [];
  for (let i = 6; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const key = d.toISOString().slice(0, 10);
    const row = byDate.get(key) || { totalWebhooks: 0, successful: 0, failed: 0 };
    series.push({ key, label: d.toLocaleDateString(undefined, { weekday: "short", timeZone: "UTC" }), ...row });
  }
  const total = series.reduce((n, d) => n + d.totalWebhooks, 0);
  const max = Math.max(1, ...series.map((d) => d.totalWebhooks));
  const W = 320, H = 140, top = 16, bottom = 22, barW = 28, gap = (W - 7 * barW) / 8;
  const y = (n) => ((H - top - bottom) * n) / max;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": "chart-title chart-desc" });
  svg.append(s("title", { id: "chart-title" }, "Webhooks per day, last 7 days"));
  svg.append(s("desc", { id: "chart-desc" }, series.map((d) => `${d.key}: ${d.totalWebhooks} received, ${d.successful} done, ${d.failed} failed`).join("; ")));
  svg.append(s("line", { x1: "0", x2: String(W), y1: String(H - bottom), y2: String(H - bottom), class: "axis" }));
  series.forEach((d, i) => {
    const x = gap + i * (barW + gap);
    const base = H - bottom;
    const other = d.totalWebhooks - d.successful - d.failed;
    let yCursor = base;
    for (const [n, cls] of [[d.successful, "ok"], [other, "other"], [d.failed, "bad"]]) {
      if (n <= 0) continue;
      const hgt = Math.max(2, y(n));
      yCursor -= hgt;
      svg.append(s("rect", { x: String(x), y: String(yCursor), width: String(barW), height: String(hgt), class: `bar ${cls}` },
        s("title", {}, `${d.key}: ${n} ${cls === "ok" ? "done" : cls === "bad" ? "failed" : "other"}`)));
    }
    if (d.totalWebhooks) {
      svg.append(s("text", { x: String(x + barW / 2), y: String(yCursor - 4), class: "value" }, String(d.totalWebhooks)));
    }
    svg.append(s("text", { x: String(x + barW / 2), y: String(H - 6), class: "day" }, d.label));
  });
  const legend = h("p", { class: "legend" },
    h("span", { class: "key ok" }), "Done ", h("span", { class: "key other" }), "Ignored / other ",
    h("span", { class: "key bad" }), "Failed");
  const summary = h("p", { class: "muted" }, total ? `${plural(total, "webhook")} this week.` : "No webhooks received in the last 7 days.");
  return h("div", {}, svg, legend, summary);
}

async function loadLogs() {
  const list = $("log-list");
  loading(list);
  const status = $("log-status").value;
  const data = await attempt(() => api("GET", `/api/plex/logs?limit=${PAGE_SIZE}${status ? `&status=${status}` : ""}${logPager.query()}`), list);
  if (!data) return;
  logPager.update(data.nextCursor);
  if (!data.logs.length) {
    list.replaceChildren(status
      ? emptyState(`No “${STATUS_NAMES[status]}” entries`, h("p", {}, "Choose “All” to see everything received."))
      : emptyState("Nothing received yet",
        h("p", {}, "Add the webhook URL from ", h("a", { href: "#setup" }, "Setup"), " to Plex (Settings → Webhooks), then finish an episode. It shows up here within seconds.")));
    return;
  }
  const table = h("table", { class: "table logs" },
    h("caption", { class: "visually-hidden" }, "Webhook activity, newest first"),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Show"), h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "What happened"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    h("tbody", {}, data.logs.map(logRow)));
  list.replaceChildren(table);
}

function logRow(r) {
  const ep = episodeLabel(r.plexSeason, r.plexEpisode);
  const what = h("td", { "data-label": "What happened" },
    r.actionTaken ? h("div", {}, ACTIONS[r.actionTaken] || r.actionTaken.replaceAll("_", " ")) : "",
    r.errorMessage ? h("div", { class: r.status === "failed" ? "error-text" : "muted" }, r.errorMessage) : "",
    r.status === "needs_resolution" ? h("a", { href: "#conflicts" }, "Choose the show in Conflicts") : "",
    h("div", { class: "muted small" }, `${r.eventType}${r.processingDurationMs !== null && r.processingDurationMs !== undefined ? ` · ${r.processingDurationMs} ms` : ""}`));
  const actions = h("td", { class: "actions" });
  if (r.status === "failed") {
    actions.append(h("button", { type: "button", onclick: (e) => replayLog(r, e.currentTarget, what) },
      "Replay", h("span", { class: "visually-hidden" }, ` ${r.plexTitle || ""} ${ep}`)));
  }
  return h("tr", { "data-log": r.id, "data-status": r.status },
    h("td", { "data-label": "When" }, timeEl(r.createdAt)),
    h("td", { "data-label": "Show" }, h("strong", {}, r.plexTitle || "–"), ep ? ` ${ep}` : ""),
    h("td", { "data-label": "Status" }, h("span", { class: `pill ${STATUS_CLASS[r.status] || ""}` }, STATUS_NAMES[r.status] || r.status)),
    what, actions);
}

async function replayLog(r, button, cell) {
  const feedback = h("div");
  cell.append(feedback);
  const res = await busy(button, () => attempt(() => api("POST", `/api/plex/logs/${r.id}/replay`), feedback));
  if (!res) return;
  feedback.replaceChildren(message("ok", "Queued again. Refresh in a few seconds to see the new entry."));
  button.disabled = true;
  announce("Replay queued");
}

// ------------------------------------------------------------------ paging

/** Cursor paging with Previous / Next buttons rendered into `id`. */
function pager(id, reload) {
  let stack = [];
  let currentCursor = null;
  let next = null;
  const el = () => $(id);
  const render = () => {
    const prev = h("button", { type: "button", disabled: !stack.length, onclick: () => { currentCursor = stack.pop() ?? null; reload(); } }, "← Previous");
    const nxt = h("button", { type: "button", disabled: !next, onclick: () => { stack.push(currentCursor); currentCursor = next; reload(); } }, "Next →");
    el().replaceChildren(...(stack.length || next ? [prev, h("span", { class: "muted" }, `Page ${stack.length + 1}`), nxt] : []));
  };
  return {
    query: () => (currentCursor ? `&cursor=${encodeURIComponent(currentCursor)}` : ""),
    update: (nextCursor) => { next = nextCursor; render(); },
    reset: () => { stack = []; currentCursor = null; next = null; },
  };
}

// ------------------------------------------------------------------ start

function start() {
  $("login-form").addEventListener("submit", signIn);
  $("setup-form").addEventListener("submit", (e) => saveSetup(e));
  $("copy-webhook").addEventListener("click", copyWebhook);
  $("rotate-secret").addEventListener("click", rotateSecret);
  $("disable").addEventListener("click", disableSync);
  $("sign-out").addEventListener("click", () => signOut());
  $("import-form").addEventListener("submit", startImport);
  $("conflict-bulk").addEventListener("submit", acceptTop);
  $("ignore-selected").addEventListener("click", ignoreSelected);
  $("conflict-select-all").addEventListener("change", (e) => {
    for (const p of conflictPicks()) p.checked = e.currentTarget.checked;
    updateConflictSelection();
  });
  $("mappings-sync-on").addEventListener("click", (e) => switchMappingsSync(true, e.currentTarget));
  $("mappings-sync-off").addEventListener("click", (e) => switchMappingsSync(false, e.currentTarget));
  $("log-status").addEventListener("change", () => { logPager.reset(); loadLogs(); });
  for (const radio of document.querySelectorAll("input[name=mapping-filter]")) {
    radio.addEventListener("change", () => { mappingFilter = radio.value; mappingPager.reset(); loadMappings(); });
  }
  for (const b of document.querySelectorAll("[data-refresh]")) {
    b.addEventListener("click", () => LOADERS[b.dataset.refresh]());
  }
  document.querySelector(".skip").addEventListener("click", (e) => {
    e.preventDefault();
    $("main").focus();
  });
  window.addEventListener("hashchange", () => route());
  if (token()) {
    enterApp(null);
  } else {
    signOut();
  }
}

start();
