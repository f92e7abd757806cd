#!/usr/bin/env python3
"""HTTP stand-ins for the services plexsync calls but we do not run: plex.tv, TMDB and a Plex
Media Server, with realistic payloads (real TMDB ids: The Office (US) is 2316, (UK) 2996).

    python tools/stubs.py [--port 0] [--ready-file PATH]

One server answers all three (their paths do not overlap); it prints
`STUBS_URL=http://127.0.0.1:<port>` on stdout once listening (and writes it to --ready-file).
Point the functions at it with TMDB_BASE_URL and PLEX_TV_BASE_URL. Requests are logged to
stderr. Tokens are checked the way the real services do: TMDB wants a bearer token or
api_key, plex.tv and the Plex server want X-Plex-Token.

Importable: `serve(port)` returns the running server (the tests and the demo use it).
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

SERVER_UUID = "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f"

# ------------------------------------------------------------------ TMDB

OFFICE_US = {
    "id": 2316,
    "name": "The Office",
    "original_name": "The Office",
    "first_air_date": "2005-03-24",
    "status": "Ended",
    "number_of_seasons": 9,
    "number_of_episodes": 201,
    "origin_country": ["US"],
    "external_ids": {"imdb_id": "tt0386676", "tvdb_id": 73244},
    "seasons": [
        {"id": 3627, "season_number": 0, "episode_count": 29, "name": "Specials", "air_date": "2007-07-13"},
        {"id": 3626, "season_number": 1, "episode_count": 6, "name": "Season 1", "air_date": "2005-03-24"},
    ],
}

OFFICE_UK = {
    "id": 2996,
    "name": "The Office",
    "original_name": "The Office",
    "first_air_date": "2001-07-09",
    "status": "Ended",
    "number_of_seasons": 2,
    "number_of_episodes": 12,
    "origin_country": ["GB"],
    "external_ids": {"imdb_id": "tt0290978", "tvdb_id": 78107},
    "seasons": [
        {"id": 8485, "season_number": 1, "episode_count": 6, "name": "Series 1", "air_date": "2001-07-09"},
    ],
}


def office_us_season_1():
    titles = ["Pilot", "Diversity Day", "Health Care", "The Alliance", "Basketball", "Hot Girl"]
    dates = ["2005-03-24", "2005-03-29", "2005-04-05", "2005-04-12", "2005-04-19", "2005-04-26"]
    episodes = [
        {"id": 397627 + i, "episode_number": i + 1, "season_number": 1, "name": t, "air_date": d,
         "episode_type": "standard", "runtime": 22, "show_id": 2316}
        for i, (t, d) in enumerate(zip(titles, dates))
    ]
    return {"id": 3626, "_id": "5256c89f19c2956ff6046d47", "season_number": 1, "name": "Season 1",
            "air_date": "2005-03-24", "episodes": episodes}


def office_uk_series_1():
    titles = ["Downsize", "Work Experience", "The Quiz", "Training", "New Girl", "Judgement"]
    episodes = [
        {"id": 180000 + i, "episode_number": i + 1, "season_number": 1, "name": t,
         "air_date": f"2001-07-{9 + 7 * i:02d}", "episode_type": "standard", "show_id": 2996}
        for i, t in enumerate(titles)
    ]
    return {"id": 8485, "season_number": 1, "name": "Series 1", "air_date": "2001-07-09",
            "episodes": episodes}


def find_result(episode=None, tv=None):
    return {
        "movie_results": [], "person_results": [], "tv_season_results": [],
        "tv_results": [tv] if tv else [],
        "tv_episode_results": [episode] if episode else [],
    }


# Episode external ids (as in a Plex episode's Guid array) -> the TMDB episode.
OFFICE_EPISODE_IDS = {
    # S01E01 Pilot .. S01E03 Health Care: tvdb and imdb episode ids
    "110413": 0, "tt0664521": 0,
    "110414": 1, "tt0664514": 1,
    "110415": 2, "tt0664517": 2,
}
# Show ids -> the show (a show item's own Guid array).
SHOW_IDS = {"73244": OFFICE_US, "tt0386676": OFFICE_US, "78107": OFFICE_UK, "tt0290978": OFFICE_UK}


def tmdb(path, query):
    """(status, body) for a TMDB v3 path."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["3", "find"] and len(parts) == 3:
        ext = parts[2]
        if ext in OFFICE_EPISODE_IDS:
            ep = office_us_season_1()["episodes"][OFFICE_EPISODE_IDS[ext]]
            return 200, find_result(episode=ep)
        if ext in SHOW_IDS:
            show = SHOW_IDS[ext]
            return 200, find_result(tv={k: show[k] for k in ("id", "name", "original_name", "first_air_date")})
        return 200, find_result()
    if parts[:2] == ["3", "tv"] and len(parts) == 3:
        show = {"2316": OFFICE_US, "2996": OFFICE_UK}.get(parts[2])
        return (200, show) if show else tmdb_not_found()
    if parts[:2] == ["3", "tv"] and len(parts) == 5 and parts[3] == "season":
        season = {("2316", "1"): office_us_season_1, ("2996", "1"): office_uk_series_1}.get(
            (parts[2], parts[4]))
        return (200, season()) if season else tmdb_not_found()
    if parts == ["3", "search", "tv"]:
        q = (query.get("query") or [""])[0].strip().lower()
        results = [
            {k: s[k] for k in ("id", "name", "original_name", "first_air_date", "origin_country")}
            | {"popularity": pop, "vote_average": 8.5}
            for s, pop in ((OFFICE_US, 210.4), (OFFICE_UK, 48.9))
            if q and q in s["name"].lower()
        ]
        return 200, {"page": 1, "results": results, "total_pages": 1, "total_results": len(results)}
    return tmdb_not_found()


def tmdb_not_found():
    return 404, {"success": False, "status_code": 34,
                 "status_message": "The resource you requested could not be found."}


# ------------------------------------------------------------------ plex.tv

PLEX_USER = {
    "id": 12345678, "uuid": "a1b2c3d4e5f60718", "username": "alice", "title": "alice",
    "email": "alice@example.com", "friendlyName": "Alice", "locale": None, "confirmed": True,
    "joinedAt": 1546300800, "emailOnlyAuth": False, "hasPassword": True, "protected": False,
    "thumb": "https://plex.tv/users/a1b2c3d4e5f60718/avatar",
    "subscription": {"active": True, "status": "Active", "plan": "lifetime"},
}


def plex_resources(self_url):
    return [
        {
            "name": "basement-nas", "product": "Plex Media Server", "productVersion": "1.41.2.9200",
            "platform": "Linux", "clientIdentifier": SERVER_UUID, "provides": "server",
            "owned": True, "accessToken": "server-access-token-not-the-user-token",
            "publicAddress": "198.51.100.23", "httpsRequired": False, "relay": True,
            "presence": True, "lastSeenAt": "2026-11-28T17:55:00Z",
            "connections": [
                {"protocol": "http", "address": "192.168.1.20", "port": 32400,
                 "uri": "http://192.168.1.20:32400", "local": True, "relay": False, "IPv6": False},
                # The "remote" connection is this stub, so the processor's Plex-server rung
                # can be exercised locally.
                {"protocol": "http", "address": "127.0.0.1", "port": 0,
                 "uri": self_url, "local": False, "relay": False, "IPv6": False},
            ],
        },
        {
            "name": "Living Room TV", "product": "Plex for Android (TV)", "clientIdentifier": "r2k9x7c4v1b8n5m3",
            "provides": "player,pubsub-player", "owned": True, "connections": [],
        },
    ]


# ------------------------------------------------------------------ Plex Media Server

PLEX_SHOWS = {
    # grandparentRatingKey -> the show's Guid array (what the server knows about the show)
    "48200": {"title": "The Office", "year": 2005,
              "Guid": [{"id": "imdb://tt0386676"}, {"id": "tmdb://2316"}, {"id": "tvdb://73244"}]},
}


def plex_metadata(rating_key):
    show = PLEX_SHOWS.get(rating_key)
    if not show:
        return 404, {"errors": [{"code": 404, "message": "Not Found", "status": 404}]}
    return 200, {"MediaContainer": {"size": 1, "Metadata": [{
        "ratingKey": rating_key, "key": f"/library/metadata/{rating_key}/children",
        "guid": "plex://show/5d9c086c46115600200aa2fe", "type": "show",
        "title": show["title"], "year": show["year"], "Guid": show["Guid"],
    }]}}


# ------------------------------------------------------------------ server


class Handler(BaseHTTPRequestHandler):
    server_version = "plexsync-stubs/1"

    def log_message(self, fmt, *args):
        print(f"stubs: {self.address_string()} {fmt % args}", file=sys.stderr, flush=True)

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.server.requests.append(url.path)
        if url.path.startswith("/3/"):
            auth = self.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and len(auth) > 7) and not query.get("api_key"):
                return self.send_json(401, {"success": False, "status_code": 7,
                                            "status_message": "Invalid API key: You must be granted a valid key."})
            return self.send_json(*tmdb(url.path, query))
        token = self.headers.get("X-Plex-Token") or (query.get("X-Plex-Token") or [""])[0]
        if not token:
            return self.send_json(401, {"errors": [{"code": 1001, "message": "User could not be authenticated", "status": 401}]})
        if url.path == "/api/v2/user":
            return self.send_json(200, PLEX_USER)
        if url.path == "/api/v2/resources":
            return self.send_json(200, plex_resources(self.server.base_url))
        if url.path.startswith("/library/metadata/"):
            return self.send_json(*plex_metadata(url.path.split("/")[3]))
        return self.send_json(404, {"errors": [{"code": 404, "message": "Not Found", "status": 404}]})


def serve(port=0):
    """Starts the stub server in a daemon thread; returns it (`.base_url`, `.requests`)."""
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    parser = argparse.ArgumentParser(description="plex.tv / TMDB / Plex server stubs")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    args = parser.parse_args()
    server = serve(args.port)
    line = f"STUBS_URL={server.base_url}"
    print(line, flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(line + "\n")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
