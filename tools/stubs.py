#!/usr/bin/env python3
"""HTTP stand-ins for the services plexsync calls but we do not run: plex.tv, TMDB and a Plex
Media Server, answering from the test world of fixtures/world.json (tools/world.py), which the
Rust tests read too: real TMDB ids (The Office (US) is 2316, (UK) 2996), realistic payloads.

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

from world import WORLD, response

# ------------------------------------------------------------------ TMDB


def find_result(episode=None, tv=None):
    return {
        "movie_results": [], "person_results": [], "tv_season_results": [],
        "tv_results": [tv] if tv else [],
        "tv_episode_results": [episode] if episode else [],
    }


def tmdb_find(external_id):
    """/3/find/{id}: an episode by the TVDB/IMDb ids of its external_ids, or a show by its own."""
    for path, body in WORLD["tmdb"].items():
        parts = path.split("/")
        if path.endswith("/external_ids") and external_id in (str(body["tvdb_id"]), body["imdb_id"]):
            # /3/tv/{show}/season/{n}/episode/{m}/external_ids
            season = response("tmdb", "/".join(parts[:6]))
            episode = season["episodes"][int(parts[7]) - 1]
            return find_result(episode=episode | {"media_type": "tv_episode"})
        if len(parts) == 4 and parts[2] == "tv":
            ext = body.get("external_ids", {})
            if external_id in (str(ext.get("tvdb_id")), ext.get("imdb_id")):
                keys = ("id", "name", "original_name", "first_air_date", "origin_country")
                return find_result(tv={k: body[k] for k in keys} | {"media_type": "tv"})
    return find_result()


def tmdb_search(query):
    """/3/search/tv: every show of the world's searches whose name contains the query."""
    q = query.strip().lower()
    seen, results = set(), []
    for path, body in WORLD["tmdb"].items():
        if path.startswith("/3/search/tv?"):
            for r in body["results"]:
                if q and q in r["name"].lower() and r["id"] not in seen:
                    seen.add(r["id"])
                    results.append(r)
    return {"page": 1, "results": results, "total_pages": 1, "total_results": len(results)}


def tmdb(path, query):
    """(status, body) for a TMDB v3 path."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["3", "find"] and len(parts) == 3:
        return 200, tmdb_find(parts[2])
    if parts == ["3", "search", "tv"]:
        return 200, tmdb_search((query.get("query") or [""])[0])
    body = response("tmdb", path)
    return (200, body) if body is not None else tmdb_not_found()


def tmdb_not_found():
    return 404, {"success": False, "status_code": 34,
                 "status_message": "The resource you requested could not be found."}


# ------------------------------------------------------------------ plex.tv


def plex_resources(self_url):
    """alice's resources, her own server reachable here: this stub speaks plain http, so her
    server's connections become its LAN address and this stub as the remote one (the processor's
    Plex-server rung then runs locally)."""
    resources = response("plex_tv", "/api/v2/resources")
    for r in resources:
        if r["owned"] and r["provides"] == "server":
            lan = [c for c in r["connections"] if c["local"] and c["protocol"] == "http"]
            r["connections"] = lan + [{"protocol": "http", "address": "127.0.0.1", "port": 0,
                                       "uri": self_url, "local": False, "relay": False, "IPv6": False}]
    return resources


# ------------------------------------------------------------------ Plex Media Server


def plex_server(path):
    body = response("plex_server", path)
    if body is None:
        return 404, {"errors": [{"code": 404, "message": "Not Found", "status": 404}]}
    return 200, body


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
            return self.send_json(200, response("plex_tv", url.path))
        if url.path == "/api/v2/resources":
            return self.send_json(200, plex_resources(self.server.base_url))
        if url.path.startswith("/library/"):
            return self.send_json(*plex_server(url.path))
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
