#!/usr/bin/env python3
"""`make demo`: posts a realistic sequence of Plex webhooks to a running `make dev` stack (with
its TMDB / plex.tv stubs) and prints the resulting activity log and The Office's watched
episodes.

The story: alice's Plex server adds The Office (US) to its library, she watches S01E01 and
S01E02, Plex's webhook for S01E02 is delivered twice, her flatmate bob watches S01E03 on the
same server, and a second library with a bare "The Office" (no ids: US or UK?) shows up.

    .venv/bin/python tools/demo.py      (reads .dev/env and .dev/secrets.json)
"""

import copy
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import http, multipart, scrobble_payload  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / ".dev"
BASE = "http://127.0.0.1:9000/lambda-url"
WAIT = float(os.environ.get("DEMO_TIMEOUT", 600))


def load_env():
    env = {}
    for line in (DEV / "env").read_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    return env


def episode(payload, number, title, ids):
    p = copy.deepcopy(payload)
    m = p["Metadata"]
    m.update({"index": number, "title": title, "ratingKey": str(48212 + number),
              "key": f"/library/metadata/{48212 + number}", "lastViewedAt": int(time.time())})
    m["Guid"] = [{"id": i} for i in ids]
    return p


def library_new_show():
    return {
        "event": "library.new", "user": True, "owner": True,
        "Account": {"id": 1, "title": "alice"},
        "Server": {"title": "basement-nas", "uuid": "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f"},
        "Metadata": {
            "librarySectionType": "show", "ratingKey": "48200", "key": "/library/metadata/48200/children",
            "guid": "plex://show/5d9c086c46115600200aa2fe", "type": "show", "title": "The Office",
            "year": 2005, "addedAt": int(time.time()),
            "Guid": [{"id": "imdb://tt0386676"}, {"id": "tmdb://2316"}, {"id": "tvdb://73244"}],
        },
    }


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
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 9000)) != 0:
            sys.exit("demo: nothing on 127.0.0.1:9000 - start `make dev` first (in another terminal)")
    env = load_env()
    if "127.0.0.1" not in env.get("TMDB_BASE_URL", ""):
        print("demo: note: make dev uses the real TMDB/plex.tv (TMDB_API_TOKEN was set); "
              "the demo expects the stubs", file=sys.stderr)
    saved = json.loads((DEV / "secrets.json").read_text())
    auth = {"Authorization": f"Bearer {saved['plexsync/api-token']}"}

    print("1. POST /api/plex/config (Plex token; auto-add shows, auto-mark watched)")
    status, _, body = http("POST", f"{BASE}/config/api/plex/config",
                           json.dumps({"plexToken": "demo-plex-token-0123456789abcdef",
                                       "autoAddShows": True, "autoMarkWatched": True}).encode(),
                           {**auth, "Content-Type": "application/json"}, timeout=WAIT)
    print(f"   -> {status} {body}")
    if status != 200:
        sys.exit(1)
    webhook = body["webhookUrl"]
    _, _, before = http("GET", f"{BASE}/logs/api/plex/logs?limit=100", headers=auth, timeout=WAIT)
    seen = {r["id"] for r in before.get("logs", [])}

    pilot = scrobble_payload()
    pilot["Metadata"]["lastViewedAt"] = int(time.time())
    diversity = episode(pilot, 2, "Diversity Day", ["imdb://tt0664514", "tmdb://397628", "tvdb://110414"])
    bob = episode(pilot, 3, "Health Care", ["imdb://tt0664517", "tmdb://397629", "tvdb://110415"])
    bob["user"] = False
    bob["Account"] = {"id": 2, "thumb": "https://plex.tv/users/f0e1d2c3b4a59687/avatar", "title": "bob"}
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
        _, _, body = http("GET", f"{BASE}/logs/api/plex/logs?limit=100", headers=auth)
        rows = [r for r in body.get("logs", []) if r["id"] not in seen]
        if len(rows) >= expected:
            break
        time.sleep(2)
    # Then until nothing new arrives for a few seconds (the duplicate may or may not log a row).
    while time.monotonic() < deadline:
        time.sleep(4)
        _, _, body = http("GET", f"{BASE}/logs/api/plex/logs?limit=100", headers=auth)
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

    _, _, body = http("GET", f"{BASE}/conflicts/api/plex/conflicts", headers=auth)
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
