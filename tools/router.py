#!/usr/bin/env python3
"""The local stand-in for API Gateway: one origin that serves the admin page and the whole API
under the same paths as the deployed HTTP API, in front of `cargo lambda watch` (which serves
each function at /lambda-url/<function>/...).

The routes are read from template.yaml (every HttpApi event of every function: method, path,
and the function's binary), and matched the way API Gateway HTTP APIs do: an exact path beats
one with {parameters}, which beats a greedy {proxy+}; a route for the method beats ANY. No
match is API Gateway's own `404 {"message":"Not Found"}`. So the webhook URL and the page's
address look the same locally as on AWS, only the origin differs.

    .venv/bin/python tools/router.py --port 8080 --watch-url http://127.0.0.1:9000

`make dev` starts it (scripts/dev.sh); the end-to-end and browser tests too (tools/e2e.py).
PyYAML comes with cfn-lint/moto in the project venv.
"""

import argparse
import http.client
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The first request to a function compiles it under watch (a cold debug build).
UPSTREAM_TIMEOUT = 900
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "host", "content-length"}


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, ...) as plain values."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_CfnLoader.add_multi_constructor("!", _any_tag)


def routes_from_template(path):
    """[(method, path, function)] for every HttpApi event in the template."""
    template = yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 (safe loader subclass)
    routes = []
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        for event in (resource.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi" or not binary:
                continue
            props = event.get("Properties", {})
            routes.append((props["Method"].upper(), props["Path"], binary))
    return routes


class Route:
    def __init__(self, method, path, function):
        self.method, self.path, self.function = method, path, function
        parts = [p for p in path.split("/") if p]
        self.greedy = bool(parts) and parts[-1].endswith("+}")
        self.params = sum(p.startswith("{") for p in parts)
        pattern = ""
        for p in parts:
            if p.endswith("+}"):
                pattern += "/.+"
            elif p.startswith("{"):
                pattern += "/[^/]+"
            else:
                pattern += "/" + re.escape(p)
        self.regex = re.compile(f"^{pattern or '/'}$")

    def rank(self):
        """Lower is more specific (API Gateway's precedence)."""
        return (self.greedy, self.params, -len(self.path), self.method == "ANY")

    def matches(self, method, path):
        return (self.method in ("ANY", method)) and self.regex.match(path) is not None


def build_table(routes):
    return sorted((Route(*r) for r in routes), key=Route.rank)


def find(table, method, path):
    return next((r for r in table if r.matches(method, path)), None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "plexsync-router/1"

    def log_message(self, fmt, *args):
        print(f"router: {self.address_string()} {fmt % args}", file=sys.stderr, flush=True)

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj).encode(), [("Content-Type", "application/json")])

    def _proxy(self):
        url = urlsplit(self.path)
        route = find(self.server.table, self.command, url.path)
        if route is None:
            return self._json(404, {"message": "Not Found"})
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        headers["X-Forwarded-Proto"] = "http"
        target = f"/lambda-url/{route.function}{url.path}" + (f"?{url.query}" if url.query else "")
        conn = http.client.HTTPConnection(self.server.watch_host, self.server.watch_port,
                                          timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(self.command, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return self._json(503, {"message": "Service Unavailable",
                                    "detail": f"cargo lambda watch did not answer: {e}"})
        finally:
            conn.close()
        passed = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        self._send(resp.status, data, passed)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _proxy  # noqa: N815


def serve(port, watch_url, template=ROOT / "template.yaml", host="127.0.0.1"):
    """Starts the router (blocking is up to the caller: call serve_forever)."""
    table = build_table(routes_from_template(template))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    upstream = urlsplit(watch_url)
    server.watch_host, server.watch_port = upstream.hostname, upstream.port or 80
    server.table = table
    return server


def main():
    parser = argparse.ArgumentParser(description="API Gateway-like router in front of cargo lambda watch")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--watch-url", default="http://127.0.0.1:9000")
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    parser.add_argument("--print-routes", action="store_true", help="print the route table and exit")
    args = parser.parse_args()
    table = build_table(routes_from_template(args.template))
    if args.print_routes:
        for r in table:
            print(f"{r.method:7} {r.path:35} -> {r.function}")
        return
    server = serve(args.port, args.watch_url, args.template)
    print(f"router: http://127.0.0.1:{args.port} -> {args.watch_url}/lambda-url/<function> "
          f"({len(table)} routes from {Path(args.template).name})", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print(f"router: stopped after {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
