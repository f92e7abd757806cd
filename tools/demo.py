#!/usr/bin/env python3
"""`make demo`: posts a realistic sequence of Plex webhooks to a running `make dev` stack (with
its TMDB / plex.tv stubs) and prints the resulting activity log and The Office's watched
episodes.

The story: alice's Plex server adds The Office (US) to its library, she watches S01E01 and
S01E02, Plex's webhook for S01E02 is delivered twice, her flatmate bob watches S01E03 on the
same server, and a second library with a bare "The Office" (no ids: US or UK?) shows up.

    .venv/bin/python tools/demo.py      (reads .dev/env and .dev/secrets.json)
"""

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import world  # noqa: E402
from e2e import http, multipart, scrobble_payload  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV = Path(os.environ.get("DEV_DIR") or ROOT / ".dev")
WAIT = float(os.environ.get("DEMO_TIMEOUT", 600))


def load_env():
    env = {}
    for line in (DEV / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


def library_new_show():
    """The Office added just now, as the show alice's scrobbles then belong to (their
    grandparentRatingKey)."""
    payload = world.webhook("library_new_show")
    show_key = world.webhook("episode_scrobble")["Metadata"]["grandparentRatingKey"]
    payload["Metadata"].update({"ratingKey": show_key, "key": f"/library/metadata/{show_key}/children",
                                "addedAt": int(time.time())})
    return payload


def ambiguous_scrobble():
    """A show in a second library whose items carry no external ids (unmatched in Plex): only
    the title, "The Office" - the US show in the tracker, or the UK original?"""
    p = scrobble_payload()
    m = p["Metadata"]
    m.update({"ratingKey": "61013", "key": "/library/metadata/61013", "parentRatingKey": "61007",
              "grandparentRatingKey": "61000", "guid": "plex://episode/5d9c0a3f2df347001e3b6a51",
              "parentGuid": "plex://season/5d9c0a3e2df347001e3b6a3c",
              "grandparentGuid": "plex://show/5d9c08a4e9d5a1001f4e7c61",
              "title": "Downsize", "grandparentTitle": "The Office", "year": 2001,
              "librarySectionTitle": "British TV", "lastViewedAt": int(time.time())})
    m.pop("Guid", None)
    return p


def main():
    if not (DEV / "env").exists():
        sys.exit("demo: no .dev/env - start `make dev` first (in another terminal)")
    env = load_env()
    # make dev's router: the page and the API under the same paths as on API Gateway.
    base = env["PUBLIC_BASE_URL"]
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", int(base.rsplit(":", 1)[1]))) != 0:
            sys.exit(f"demo: nothing on {base} - start `make dev` first (in another terminal)")
    if "127.0.0.1" not in env.get("TMDB_BASE_URL", ""):
        print("demo: note: make dev uses the real TMDB/plex.tv (TMDB_API_TOKEN was set); "
              "the demo expects the stubs", file=sys.stderr)
    saved = json.loads((DEV / "secrets.json").read_text())
    auth = {"Authorization": f"Bearer {saved[env['API_TOKEN_SECRET_ID']]}"}

    print("1. POST /api/plex/config (Plex token; auto-add shows, auto-mark watched)")
    status, _, body = http("POST", f"{base}/api/plex/config",
                           # The local Plex stub speaks plain http: the LAN opt-in.
                           json.dumps({"plexToken": "demo-plex-token-0123456789abcdef",
                                       "autoAddShows": True, "autoMarkWatched": True,
                                       "allowInsecureHttp": True}).encode(),
                           {**auth, "Content-Type": "application/json"}, timeout=WAIT)
    print(f"   -> {status} {body}")
    if status != 200:
        sys.exit(1)
    webhook = body["webhookUrl"]
    _, _, before = http("GET", f"{base}/api/plex/logs?limit=100", headers=auth, timeout=WAIT)
    seen = {r["id"] for r in before.get("logs", [])}

    pilot, diversity, bob = (world.office_episode_scrobble(n) for n in (1, 2, 3))
    for p in (pilot, diversity, bob):
        p["Metadata"]["lastViewedAt"] = int(time.time())
    bob["user"] = False
    bob["Account"] = world.webhook("other_account")
    steps = [
        ("library.new: The Office (US) added to the library", library_new_show()),
        ("media.scrobble: alice finished S01E01 Pilot", pilot),
        ("media.scrobble: alice finished S01E02 Diversity Day", diversity),
        ("media.scrobble: the same S01E02 webhook again (duplicate)", diversity),
        ("media.scrobble: bob (another account) finished S01E03", bob),
        ("media.scrobble: 'The Office' with no ids from another library (ambiguous)", ambiguous_scrobble()),
    ]
    for i, (what, payload) in enumerate(steps, start=2):
        data, ctype = multipart(payload)
        status, _, resp = http("POST", webhook, data, {"Content-Type": ctype}, timeout=WAIT)
        print(f"{i}. {what}\n   -> {status} {resp}")
        time.sleep(0.5)

    print(f"\nwaiting for the processor (the bridge delivers the queue; first build may take a while) ...")
    expected = len(steps) - 1  # the duplicate is dropped by the FIFO queue's deduplication
    deadline = time.monotonic() + WAIT
    rows = []
    while time.monotonic() < deadline:
        _, _, body = http("GET", f"{base}/api/plex/logs?limit=100", headers=auth)
        rows = [r for r in body.get("logs", []) if r["id"] not in seen]
        if len(rows) >= expected:
            break
        time.sleep(2)
    # Then until nothing new arrives for a few seconds (the duplicate may or may not log a row).
    while time.monotonic() < deadline:
        time.sleep(4)
        _, _, body = http("GET", f"{base}/api/plex/logs?limit=100", headers=auth)
        newer = [r for r in body.get("logs", []) if r["id"] not in seen]
        if len(newer) == len(rows):
            break
        rows = newer

    print("\nActivity log (GET /api/plex/logs, oldest first):")
    print(f"   {'status':<17} {'event':<15} {'show':<12} {'ep':<7} {'action':<22} detail")
    for r in sorted(rows, key=lambda r: r["id"]):
        ep = f"S{r['plexSeason']:02d}E{r['plexEpisode']:02d}" if r.get("plexEpisode") else "-"
        print(f"   {r['status']:<17} {r['eventType']:<15} {(r.get('plexTitle') or '-')[:12]:<12} "
              f"{ep:<7} {(r.get('actionTaken') or '-'):<22} {r.get('errorMessage') or ''}")

    _, _, body = http("GET", f"{base}/api/plex/conflicts", headers=auth)
    print("\nOpen conflicts (GET /api/plex/conflicts):")
    for c in body.get("conflicts", []):
        candidates = ", ".join(f"TMDB {m.get('tmdbId')} ({m.get('source')}, {m.get('matchScore')})"
                               for m in c.get("potentialMatches", []))
        print(f"   #{c['id']} {c['plexTitle']!r} ({c['conflictType']}, {c.get('pendingEvents', 0)} event(s) waiting): "
              f"{candidates}")
    if not body.get("conflicts"):
        print("   none")

    out = subprocess.run(
        ["psql", env["DATABASE_URL"], "-XAtq", "-F", " | ", "-c", """
         SELECT 'S' || lpad(s->>'seasonNumber', 2, '0') || 'E' || lpad(ep->>'episodeNumber', 2, '0'),
                ep->>'title', CASE WHEN (ep->>'watched')::boolean THEN 'watched ' || (ep->>'dateWatched') ELSE '-' END
         FROM tvshows, jsonb_array_elements(seasons) s, jsonb_array_elements(s->'episodes') ep
         WHERE tmdb_id = 2316 AND (s->>'seasonNumber')::int = 1
         ORDER BY (ep->>'episodeNumber')::int"""],
        capture_output=True, text=True)
    print("\nThe Office (US), season 1 in the tracker (tvshows, TMDB 2316):")
    print("\n".join(f"   {line}" for line in out.stdout.splitlines()) or f"   (not in the tracker) {out.stderr}")


if __name__ == "__main__":
    main()
