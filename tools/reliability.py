#!/usr/bin/env python3
"""Reliability suite (`make reliability`; `--quick` runs in `make test`): the stack of the
end-to-end test (tools/e2e.py: the real functions under `cargo lambda watch`, moto, Postgres,
the stubs and the SQS bridge) under a duplicate storm, a database outage, a poison message and
schemathesis, each ending with an exact check of the database and the queues; then every log
and response captured is scanned for the secrets. Writes the figures as JSON (--results) for
scripts/reliability.sh, which puts them in RELIABILITY.md.

    .venv/bin/python tools/reliability.py [--quick] [--cases storm,poison,outage,api]
                                          [--results PATH]

Needs DATABASE_URL (an admin URL) and AWS_ENDPOINT_URL, as e2e.py (run through
scripts/reliability.sh). Prints `RELIABILITY: N passed, M failed` last.
"""

import argparse
import base64
import concurrent.futures
import copy
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlparse, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e  # noqa: E402
import router  # noqa: E402
import stubs  # noqa: E402
import world  # noqa: E402
from e2e import aws, check, http, log, psql  # noqa: E402

LOG_DIR = ROOT / ".dev" / "reliability"
stacks = []  # every stack started; the secret scan looks for their secrets
figures = {}  # case -> {figure: value}; the JSON scripts/reliability.sh turns into RELIABILITY.md
captured = []  # every response body the suite received (scanned for secrets at the end)

# Plex's webhook limit is per source address (100/min); the storm spreads over loopback
# addresses, never anything outside 127.0.0.0/8.
LOOPBACK_SOURCES = [f"127.0.0.{i}" for i in range(2, 40)]


# ------------------------------------------------------------------ helpers


def apigw_event(method, path, query, headers, body, source):
    """An API Gateway HTTP API (payload 2.0) event, as API Gateway builds it: the client address
    in requestContext.http.sourceIp, the body base64-encoded (so any bytes pass)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {k.lower(): v for k, v in headers.items()}, "queryStringParameters": params or None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "reliability", "domainName": "127.0.0.1", "stage": "$default",
            "requestId": secrets.token_hex(8), "routeKey": "$default", "time": "",
            "timeEpoch": int(time.time() * 1000),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source,
                     "userAgent": headers.get("User-Agent", "")},
        },
        "body": base64.b64encode(body or b"").decode(), "isBase64Encoded": True,
    }


def invoke_http(base, function, event, timeout=120):
    """Invokes `function` under watch with an API Gateway event; (status, headers, body bytes)."""
    status, _, resp = http("POST", f"{base}/2015-03-31/functions/{function}/invocations",
                           json.dumps(event).encode(), {"Content-Type": "application/json"}, timeout=timeout)
    assert status == 200 and isinstance(resp, dict) and "statusCode" in resp, f"invoke: {status} {resp}"
    raw = (resp.get("body") or "").encode()
    if resp.get("isBase64Encoded"):
        raw = base64.b64decode(raw)
    return resp["statusCode"], resp.get("headers") or {}, raw


def post_from(source, webhook_url, body, headers, timeout=120):
    """POSTs a webhook as API Gateway delivers it from client address `source`, through watch's
    invoke API: `cargo lambda watch`'s function URLs always say 127.0.0.1, and the webhook's
    limiter (100/min per address) keys on sourceIp. (status, parsed body)."""
    u = urlparse(webhook_url)
    path = u.path.split("/lambda-url/webhook", 1)[1]
    event = apigw_event("POST", path, u.query, {**headers, "User-Agent": "PlexMediaServer/1.41.2.9200"},
                        body, source)
    status, _, raw = invoke_http(f"{u.scheme}://{u.netloc}", "webhook", event, timeout)
    captured.append(raw)
    try:
        return status, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, raw


class Gateway(BaseHTTPRequestHandler):
    """A minimal API Gateway in front of watch for schemathesis: every method and path, routed
    to its function by template.yaml's routes (as make dev's router does), as a payload 2.0 event with a base64 body. (watch's own
    function URLs answer 500 themselves to a body that is not UTF-8, before any function runs;
    API Gateway passes such a body on, base64-encoded.) No route: API Gateway's 404."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def __getattr__(self, name):
        if name.startswith("do_"):  # any method, QUERY and friends included
            return self.forward
        raise AttributeError(name)

    def forward(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = router.find(ROUTES, self.command, url.path)
        function = route.function if route else None
        if function is None:
            status, headers, raw = 404, {"content-type": "application/json"}, b'{"message":"Not Found"}'
        else:
            event = apigw_event(self.command, url.path, url.query, dict(self.headers), body, "127.0.0.1")
            try:
                status, headers, raw = invoke_http(self.server.base, function, event)
            except AssertionError as e:
                # lambda_http refused the event before our code ran: kept for the report.
                with open(LOG_DIR / "gateway-rejected.jsonl", "a") as f:
                    f.write(json.dumps({"error": str(e)[:300], "event": event}) + "\n")
                status, headers, raw = 502, {"content-type": "application/json"}, b'{"message":"Bad Gateway"}'
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def gateway(stack):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    server.daemon_threads = True
    server.base = stack.base
    threading.Thread(target=server.serve_forever, daemon=True).start()
    e2e.cleanups.append(server.shutdown)
    return f"http://127.0.0.1:{server.server_address[1]}"


def api(stack, method, function, path, body=None, timeout=e2e.FIRST_REQUEST_TIMEOUT):
    headers = {**stack.auth, "Content-Type": "application/json"}
    data = json.dumps(body).encode() if body is not None else None
    status, _, resp = http(method, stack.url(function, path), data, headers, timeout=timeout)
    captured.append(json.dumps(resp).encode() if not isinstance(resp, bytes) else resp)
    return status, resp


def configure(stack):
    """POST /api/plex/config (as the user does once); returns the webhook URL."""
    status, body = api(stack, "POST", "config", "/api/plex/config",
                       # The stub Plex server speaks plain http: the user's LAN opt-in.
                       {"plexToken": e2e.PLEX_TOKEN, "autoMarkWatched": True, "autoAddShows": False,
                        "allowInsecureHttp": True})
    assert status == 200, f"config: {status} {body}"
    return body["webhookUrl"]


def queue_counts(url):
    attrs = aws("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def wait_until(what, predicate, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_drained(stack, settle=3.0, timeout=e2e.PROCESSING_TIMEOUT):
    """Both queues quiet: the main queue empty (nothing waiting, nothing in flight) for `settle`
    seconds in a row."""
    quiet_since = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue_counts(stack.queue_url) == (0, 0):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return
        else:
            quiet_since = None
        time.sleep(0.5)
    raise AssertionError(f"queue not drained after {timeout:.0f} s: {queue_counts(stack.queue_url)}")


def dlq_bodies(stack):
    sqs = aws("sqs")
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=60).get("Messages", [])
        if not got:
            return out
        out.extend(m["Body"] for m in got)


def log_rows(db_url, where="true"):
    """{status: count} of plex_webhook_logs rows matching `where`."""
    out = psql(db_url, f"SELECT status, count(*) FROM plex_webhook_logs WHERE {where} GROUP BY status")
    return {s: int(n) for s, n in (line.split("|") for line in out.splitlines() if line)}


def episode_payload(show, season, number, viewed_at):
    """A scrobble of one episode of a generated show (ids unique per episode)."""
    p = e2e.scrobble_payload()
    m = p["Metadata"]
    key = f"{show['plex_key']}{season:02d}{number:03d}"
    m.update({
        "ratingKey": key, "key": f"/library/metadata/{key}",
        "parentRatingKey": f"{show['plex_key']}{season:02d}", "grandparentRatingKey": show["plex_key"],
        "guid": f"plex://episode/{secrets.token_hex(12)}",
        "parentGuid": f"plex://season/{secrets.token_hex(12)}", "grandparentGuid": show["plex_guid"],
        "title": f"Episode {number}", "grandparentTitle": show["title"], "parentTitle": f"Season {season}",
        "index": number, "parentIndex": season, "lastViewedAt": viewed_at,
        "Guid": [{"id": f"tvdb://{int(key)}"}],
    })
    return p


def seed_shows(db_url, count, seasons, per_season):
    """`count` tracker shows, each mapped to a Plex show on the stub server, with
    seasons x per_season unwatched episodes."""
    shows = []
    for i in range(count):
        show = {"tmdb": 900001 + i, "title": f"Reliability Show {i + 1}", "plex_key": str(61 + i),
                "plex_guid": f"plex://show/{secrets.token_hex(12)}"}
        data = [{"seasonNumber": s, "episodes": [
            {"episodeNumber": e, "title": f"Episode {e}", "airDate": "2020-01-01", "watched": False,
             "dateWatched": None} for e in range(1, per_season + 1)]} for s in range(1, seasons + 1)]
        show["id"] = int(psql(db_url, f"""
            INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons, watched_episodes,
                                 total_episodes)
            VALUES ({show['tmdb']}, '{show['title']}', '2020-01-01', 'Watching',
                    '{json.dumps(data)}'::jsonb, 0, {seasons * per_season}) RETURNING id""").split()[0])
        psql(db_url, f"""
            INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                                            tmdb_id, tvshow_id, match_confidence, match_method,
                                            manually_confirmed)
            VALUES ('{world.SERVER_UUID}', '{show['plex_key']}', '{show['plex_guid']}', '{show['title']}',
                    {show['tmdb']}, {show['id']}, 1, 'manual', true)""")
        shows.append(show)
    return shows


def watched_count(db_url, tvshow_ids):
    return int(psql(db_url, f"""
        SELECT count(*) FROM tvshows, jsonb_array_elements(seasons) s, jsonb_array_elements(s->'episodes') ep
        WHERE id IN ({','.join(map(str, tvshow_ids))}) AND (ep->>'watched')::boolean"""))


def start_bridge(stack):
    """The bridge with 1 s long polls, so a stopped one holds no receive open for long."""
    stack.bridge_log = f"bridge-{len(e2e.cleanups)}"
    stack.bridge = e2e.start(stack.bridge_log, [
        sys.executable, "tools/bridge.py", "--queue-url", stack.queue_url, "--wait", "1",
        "--invoke-url", f"{stack.base}/2015-03-31/functions/processor/invocations"],
        stack.env, stack.log_dir)
    stack.bridge_log += ".log"


def stop_bridge(stack):
    if stack.bridge and stack.bridge.poll() is None:
        os.killpg(stack.bridge.pid, signal.SIGTERM)
        stack.bridge.wait(10)
        time.sleep(1.5)  # its last long poll is over
    stack.bridge = None


# ------------------------------------------------------------------ duplicate storm


def storm(stack, webhook_url, n, replays):
    """n identical scrobbles posted at once, from distinct loopback addresses; then `replays`
    copies of the same message put straight on the queue with fresh deduplication ids (a
    redelivery after SQS's 5-minute dedup window, or a replay)."""
    body, ctype = e2e.multipart(e2e.scrobble_payload())
    headers = {"Content-Type": ctype}

    def one(i):
        return post_from(LOOPBACK_SOURCES[i % len(LOOPBACK_SOURCES)], webhook_url, body, headers)[0]

    # The first post, alone: the bridge is stopped, so its queue message can be read (the
    # replays below reuse it) and put back.
    status = one(0)
    assert status == 202, f"first post: {status}"
    sqs = aws("sqs")
    first = sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=2)["Messages"][0]
    sqs.change_message_visibility(QueueUrl=stack.queue_url, ReceiptHandle=first["ReceiptHandle"],
                                  VisibilityTimeout=0)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(one, range(1, n)))
    took = time.monotonic() - started
    by_status = {s: statuses.count(s) for s in sorted(set(statuses))}
    assert by_status == {202: n - 1}, f"every post accepted with 202, got {by_status}"
    start_bridge(stack)
    wait_until("S01E01 watched", lambda: e2e.episode_state(stack.db_url, 1, 1).startswith("true"),
               e2e.PROCESSING_TIMEOUT)
    wait_drained(stack)

    # The same message again, as SQS would deliver it after its 5-minute dedup window (or a
    # second delivery): the processor's idempotency key must hold.
    for i in range(replays):
        sqs.send_message(QueueUrl=stack.queue_url, MessageBody=first["Body"],
                         MessageGroupId=f"{world.SERVER_UUID}:48200",
                         MessageDeduplicationId=f"replay-{i}-{secrets.token_hex(4)}")
    wait_drained(stack)

    rows = log_rows(stack.db_url, "plex_rating_key = '48213'")
    marks = watched_count(stack.db_url, [int(psql(stack.db_url, "SELECT id FROM tvshows WHERE tmdb_id = 2316"))])
    keys = int(psql(stack.db_url, "SELECT count(*) FROM plex_processed_messages"))
    dlq = dlq_bodies(stack)
    figures["storm"] = {"posts": n, "accepted_202": by_status.get(202, 0) + 1, "post_seconds": round(took, 1),
                        "replays": replays, "log_rows": rows, "episodes_watched": marks,
                        "idempotency_keys": keys, "dlq": len(dlq)}
    assert rows == {"success": 1, **({"duplicate": replays} if replays else {})}, rows
    assert marks == 1, f"{marks} episodes watched"
    assert keys == 1, f"{keys} idempotency keys"
    assert not dlq, f"DLQ: {dlq}"
    return f"{n} posts -> {rows}, {marks} episode watched, DLQ empty ({took:.1f} s to post)"


# ------------------------------------------------------------------ poison message


class PoisonStubs(stubs.Handler):
    """The usual stubs, except that TMDB answers 503 for anything about one show, for good:
    a message about it can never be processed."""

    POISON_TVDB = "999000111"

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/3/") and self.POISON_TVDB in self.path:
            self.server.requests.append(self.path)
            return self.send_json(503, {"success": False, "status_code": 46,
                                        "status_message": "The API is undergoing maintenance."})
        return super().do_GET()


def poison_stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), PoisonStubs)
    server.daemon_threads = True
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    e2e.cleanups.append(server.shutdown)
    return server


def poison_payload():
    p = e2e.scrobble_payload()
    p["Metadata"].update({
        "ratingKey": "77013", "key": "/library/metadata/77013", "parentRatingKey": "77010",
        "grandparentRatingKey": "77000", "guid": "plex://episode/6a1b2c3d4e5f60718293a4b5",
        "grandparentGuid": "plex://show/6a1b2c3d4e5f60718293a400", "title": "The Poisoned Chalice",
        "grandparentTitle": "Unmatchable", "index": 3, "parentIndex": 1,
        "Guid": [{"id": f"tvdb://{PoisonStubs.POISON_TVDB}"}],
    })
    return p


def poison(stack, webhook_url, max_receive):
    """A poison scrobble and three good ones (other shows) in one batch: the good ones are
    processed, the poison one ends in the DLQ after max_receive receives."""
    stop_bridge(stack)
    shows = seed_shows(stack.db_url, 3, 1, 3)
    payloads = [poison_payload()] + [episode_payload(s, 1, 1, int(time.time())) for s in shows]
    for i, p in enumerate(payloads):
        body, ctype = e2e.multipart(p)
        status, resp = post_from(LOOPBACK_SOURCES[i], webhook_url, body, {"Content-Type": ctype})
        assert status == 202, f"{status} {resp}"
    # The bridge starts now, so the four arrive in one batch, the poison one first.
    start_bridge(stack)
    wait_until("the poison message in the DLQ", lambda: queue_counts(stack.dlq_url)[0] >= 1,
               e2e.PROCESSING_TIMEOUT)
    wait_drained(stack)
    # The bridge's first invocation: the poison message and its batch-mates together.
    first_batch = next(int(line.split(" with ")[1].split()[0]) for line in
                       (stack.log_dir / stack.bridge_log).read_text().splitlines() if "invoking processor" in line)
    marked = watched_count(stack.db_url, [s["id"] for s in shows])
    good_rows = log_rows(stack.db_url, f"plex_rating_key IN ({','.join(repr(s['plex_key'] + '01001') for s in shows)})")
    poison_rows = log_rows(stack.db_url, "plex_rating_key = '77013'")
    # What the user sees: the activity log, and the DLQ listing (read before the harness's own
    # look at the DLQ below hides its messages for a while).
    status, listing = api(stack, "GET", "logs", "/api/plex/logs?limit=200")
    visible = status == 200 and any(r.get("plexRatingKey") == "77013" and r.get("status") == "failed"
                                    for r in listing.get("logs", []))
    status, letters = api(stack, "GET", "logs", "/api/plex/dead-letters")
    in_dlq_listing = status == 200 and any((d.get("event") or {}).get("plexRatingKey") == "77013"
                                           for d in letters.get("deadLetters", []))
    bodies = dlq_bodies(stack)
    dlq_shows = [json.loads(b)["event"]["show"]["title"] for b in bodies]
    figures["poison"] = {"max_receive_count": max_receive, "first_batch_records": first_batch,
                         "dlq_messages": len(bodies), "dlq_shows": dlq_shows,
                         "batch_mates_marked": marked, "batch_mate_log_rows": good_rows,
                         "poison_log_rows": poison_rows, "visible_in_logs_api": visible,
                         "visible_in_dead_letters": in_dlq_listing,
                         "tmdb_requests_for_poison": sum(PoisonStubs.POISON_TVDB in r for r in stack.stub.requests)}
    assert first_batch == 4, f"the first batch had {first_batch} records, not the poison one and its 3 mates"
    assert dlq_shows == ["Unmatchable"], f"DLQ holds {dlq_shows}"
    assert marked == 3 and good_rows == {"success": 3}, f"batch-mates: {marked} marked, rows {good_rows}"
    assert poison_rows == {"failed": 1}, f"poison log rows {poison_rows}"
    assert visible and in_dlq_listing, f"user sees it: logs {visible}, dead-letters {in_dlq_listing}"
    return (f"poison in DLQ after {max_receive} receives, logged failed, listed in dead-letters; "
            "3 batch-mates marked")


# ------------------------------------------------------------------ database outage


class Throwaway:
    """A Postgres cluster of our own (initdb in a temp dir, its own port), so the outage never
    touches the machine's shared cluster."""

    def __init__(self):
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="plexsync-outage-"))
        self.data = self.dir / "data"
        self.port = e2e.free_port()
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self.as_user = as_user
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        e2e.cleanups.append(self.remove)
        self.start()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool, *args):
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True, capture_output=True, text=True)

    def start(self):
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.dir / "postgres.log"), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off", "start")

    def stop(self):
        # immediate: the server dies like a crashed instance (no clean shutdown of sessions).
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")

    def remove(self):
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def outage(n, down_seconds, visibility, max_receive):
    """n distinct scrobbles flow; Postgres is killed once a quarter are done and started again
    down_seconds later."""
    pg = Throwaway()
    db_url = e2e.fresh_database(pg.url)
    stack = e2e.start_stack(pg.url, db_url=db_url, seed=None, visibility=visibility,
                            max_receive=max_receive, log_dir=LOG_DIR / "outage")
    stacks.append(stack)
    webhook_url = configure(stack)
    per_show = 100
    shows = seed_shows(db_url, (n + per_show - 1) // per_show, 4, 25)
    viewed = int(time.time())
    bodies = []
    for i in range(n):
        show, k = shows[i // per_show], i % per_show
        bodies.append(e2e.multipart(episode_payload(show, k // 25 + 1, k % 25 + 1, viewed)))

    def one(i):
        body, ctype = bodies[i]
        status = post_from(LOOPBACK_SOURCES[i % len(LOOPBACK_SOURCES)], webhook_url, body, {"Content-Type": ctype})[0]
        return status, time.monotonic()

    pool = concurrent.futures.ThreadPoolExecutor(8)
    futures = [pool.submit(one, i) for i in range(n)]
    done_before = wait_until(f"{n // 4} processed", lambda: (c := sum(log_rows(db_url).values())) >= n // 4 and c,
                             e2e.PROCESSING_TIMEOUT, interval=0.1)
    pg.stop()
    down_at = time.monotonic()
    log(f"outage: Postgres stopped after {done_before} messages")
    time.sleep(down_seconds)
    pg.start()
    up_at = time.monotonic()
    log(f"outage: Postgres back after {up_at - down_at:.1f} s")
    answered = [f.result() for f in futures]
    statuses = [s for s, _ in answered]
    during = sum(down_at <= t < up_at for _, t in answered)
    pool.shutdown()
    by_status = {s: statuses.count(s) for s in sorted(set(statuses))}
    wait_until(f"{n} log rows", lambda: sum(log_rows(db_url).values()) >= n, e2e.PROCESSING_TIMEOUT)
    wait_drained(stack)
    rows = log_rows(db_url)
    per_message = psql(db_url, "SELECT count(*) FROM (SELECT plex_rating_key FROM plex_webhook_logs "
                               "GROUP BY 1 HAVING count(*) > 1) d")
    keys = int(psql(db_url, "SELECT count(*) FROM plex_processed_messages"))
    marks = watched_count(db_url, [s["id"] for s in shows])
    dlq = dlq_bodies(stack)
    retries = int(psql(db_url, "SELECT count(*) FROM plex_webhook_logs WHERE receive_count > 1") or 0)
    figures["outage"] = {"scrobbles": n, "accepted_202": by_status.get(202, 0), "processed_before_stop": done_before,
                         "down_seconds": down_seconds, "posted_while_down": during, "visibility_timeout": visibility,
                         "max_receive_count": max_receive, "log_rows": rows, "items_with_2plus_rows": int(per_message),
                         "idempotency_keys": keys, "episodes_watched": marks, "dlq": len(dlq),
                         "rows_after_a_retry": retries}
    assert by_status == {202: n}, f"webhook during the outage: {by_status}"
    assert rows == {"success": n}, f"log rows {rows}"
    assert per_message == "0", f"{per_message} items have more than one log row"
    assert keys == n and marks == n, f"{keys} keys, {marks} episodes watched"
    assert not dlq, f"{len(dlq)} messages in the DLQ"
    return (f"{n} scrobbles, Postgres down {down_seconds} s after {done_before} ({during} posted meanwhile): {rows}, "
            f"{marks} watched, DLQ empty, {retries} needed a retry")


# ------------------------------------------------------------------ API fuzzing (schemathesis)

# Which function serves which path: template.yaml's HttpApi routes, read as make dev's router
# reads them, so a new route cannot be missed here.
ROUTES = router.build_table(router.routes_from_template(ROOT / "template.yaml"))


def schemathesis(stack, max_examples):
    report = LOG_DIR / "schemathesis"
    report.mkdir(parents=True, exist_ok=True)
    base = gateway(stack)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "schemathesis"), "run", str(ROOT / "docs" / "openapi.yaml"),
         "--url", base, "-H", f"Authorization: Bearer {stack.api_token}",
         "--exclude-path-regex", "/webhook$", "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", str(max_examples), "--seed", "13", "--workers", "1",
         "--request-timeout", "120", "--suppress-health-check", "all", "--continue-on-failure",
         "--report", "har,ndjson", "--report-har-path", str(report / "api.har"),
         "--report-ndjson-path", str(report / "api.ndjson"), "--no-color"],
        # Not the checkout: watch restarts the functions on any file schemathesis writes there.
        cwd=report, capture_output=True, text=True,
    )
    (report / "schemathesis.txt").write_text(result.stdout + result.stderr)
    totals = count_schemathesis(report / "api.ndjson")
    problems = totals.pop("problems")
    if result.returncode not in (0, 1):
        problems.append(f"schemathesis exited {result.returncode}: {result.stderr[-500:]}")
    captured.extend(har_bodies(report / "api.har"))
    figures["api"] = {**totals, "max_examples": max_examples, "problems": problems[:20]}
    assert totals["operations"] >= 10, f"only {totals['operations']} operations tested: {problems}"
    assert totals["server_errors"] == 0 and totals["schema_violations"] == 0, "; ".join(problems[:10])
    return (f"{totals['operations']} operations, {totals['cases']} requests: {totals['server_errors']} server "
            f"errors, {totals['schema_violations']} schema violations")


def count_schemathesis(ndjson):
    out = {"operations": 0, "server_errors": 0, "schema_violations": 0, "other_failures": 0, "cases": 0,
           "problems": []}
    if not ndjson.exists():
        out["problems"].append("no report")
        return out
    seen_failures = set()
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        scenario = event.get("ScenarioFinished")
        if not scenario:
            continue
        recorder = scenario.get("recorder") or {}
        label = recorder.get("label", "?")
        if scenario.get("phase") in (None, "fuzzing", "examples", "coverage"):
            pass
        out["cases"] += len(recorder.get("cases", {}))
        for checks in (recorder.get("checks") or {}).values():
            for c in checks:
                if c.get("status", "").lower() != "failure":
                    continue
                key = (label, c.get("name"), (c.get("failure_info") or {}).get("failure", {}).get("title"))
                if key in seen_failures:
                    continue
                seen_failures.add(key)
                name = c.get("name")
                kind = {"not_a_server_error": "server_errors",
                        "response_schema_conformance": "schema_violations"}.get(name, "other_failures")
                out[kind] += 1
                info = (c.get("failure_info") or {}).get("failure", {})
                out["problems"].append(f"{label} {name}: {info.get('title', '')} {info.get('message', '')[:300]}")
    out["operations"] = len({k for k in labels(ndjson)})
    return out


def labels(ndjson):
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        scenario = event.get("ScenarioFinished")
        if scenario and (scenario.get("recorder") or {}).get("label"):
            yield scenario["recorder"]["label"]


def har_bodies(har):
    """Response bodies (and headers) from a HAR file; requests are left out, they carry the
    API token by design."""
    if not har.exists():
        return []
    out = []
    for entry in json.loads(har.read_text()).get("log", {}).get("entries", []):
        resp = entry.get("response", {})
        text = (resp.get("content") or {}).get("text") or ""
        if (resp.get("content") or {}).get("encoding") == "base64":
            text = base64.b64decode(text).decode("utf-8", "replace")
        out += [text.encode(), json.dumps(resp.get("headers", [])).encode()]
    return out


# ------------------------------------------------------------------ secret scan


def without_webhook_url(raw):
    """The config API returns the webhook URL, secret included, on purpose (the user pastes it
    into Plex): that one field is not a leak. Everything else in the body is scanned."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "webhookUrl"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return json.dumps(strip(body)).encode()


def secret_scan(stacks):
    needles = {}
    for s in stacks:
        needles.update({"Plex token": e2e.PLEX_TOKEN, "API token": s.api_token,
                        "webhook secret": s.webhook_secret, "encryption key": s.encryption_key})
    # Each secret also in the encodings a log might use.
    variants = []
    for name, value in needles.items():
        for v in {value, base64.b64encode(value.encode()).decode(), value[:16]}:
            variants.append((name, v.encode()))
    files = sorted(p for p in LOG_DIR.rglob("*") if p.is_file() and p.suffix in (".log", ".txt"))
    hits = []
    for path in files:
        data = path.read_bytes()
        hits += [f"{name} in {path.relative_to(ROOT)}" for name, v in variants if v in data]
    for i, raw in enumerate(captured):
        data = without_webhook_url(raw)
        hits += [f"{name} in response #{i}" for name, v in variants if v in data]
    scanned = sum(p.stat().st_size for p in files)
    figures["secrets"] = {"log_files": len(files), "log_bytes": scanned, "responses": len(captured),
                          "hits": len(hits), "where": sorted(set(hits))[:20]}
    assert not hits, "; ".join(sorted(set(hits))[:10])
    return f"{len(files)} log files ({scanned} bytes) and {len(captured)} responses: 0 hits"


# ------------------------------------------------------------------ RELIABILITY.md

NOTES = """## How each case works

- **Duplicate storm**: {storm_n} copies of one multipart scrobble (The Office S01E01), 32 at a time,
  as API Gateway events from 38 loopback client addresses (127.0.0.2-39) through watch's invoke
  API: `cargo lambda watch`'s function URLs report every client as 127.0.0.1, and the webhook's
  limiter (100/min) keys on `requestContext.http.sourceIp`. SQS FIFO deduplication absorbs the
  copies; then {replays} copies of the very queue message the webhook produced go straight onto the
  queue with fresh deduplication ids (a redelivery after the 5-minute dedup window, or a replay),
  which the processor's idempotency key must absorb: they are logged `duplicate`, nothing is marked
  twice.
- **Database outage**: a throwaway Postgres cluster (initdb in a temp dir, its own port; the
  machine's shared cluster is never touched) is killed with `pg_ctl stop -m immediate` once a
  quarter of the scrobbles are processed, while posts continue, and started again {down} s later.
  Time is scaled down: a {vis} s visibility timeout and maxReceiveCount {outage_max} in the test; the
  template's 360 s and 5 absorb an outage of about 24 minutes the same way.
- **Poison message**: TMDB answers 503 for good for one unmatched show ("Unmatchable"), so the
  processor fails it transiently on every receive. It is posted with three scrobbles of other,
  mapped shows; the bridge starts only then, so all four arrive in one batch, the poison first.
  maxReceiveCount {poison_max} (the template's), visibility timeout 4 s.
- **API fuzzing**: schemathesis (`--checks not_a_server_error,response_schema_conformance`,
  all phases, positive and negative data, seed 13) against `docs/openapi.yaml` with the API token,
  webhooks excluded, through a minimal API Gateway in tools/reliability.py that sends each request
  to its function as a payload 2.0 event with a base64 body. (watch's function URLs answer 500
  themselves, before any function runs, to a body that is not UTF-8; API Gateway passes such a
  body on base64-encoded.)
- **Secrets**: every log of the suite (functions under watch, bridge, schemathesis output) and every
  response body and header (webhook, management API, schemathesis' HAR) is searched for the Plex
  token, the API token, the webhook secret and the encryption key, each also base64-encoded and as
  its first 16 characters. The one deliberate exception is the `webhookUrl` field of the config
  API, which carries the webhook secret because the user pastes that URL into Plex. Requests are
  not scanned (they carry the API token by design), nor the stubs' access logs (they stand for
  plex.tv and TMDB, which receive the tokens legitimately).
- **Fuzzing**: `fuzz/fuzz_targets/webhook_body.rs` drives a body the way a request does:
  `webhook::extract_payload` (multipart or JSON, per sender), the sender's parser and filter, and
  for an accepted event the queue message, which must read back unchanged.
  `fuzz/fuzz_targets/guid.rs` feeds lines to `PlexGuid::parse` and `ExternalIds::from_guid_array`.
  Seeds: every payload of `fixtures/world.json` (Plex, Jellyfin, Emby) as JSON and as the
  multipart body its server posts (`tools/fuzz_seeds.py`). Engine: cargo-fuzz (libFuzzer) when a
  nightly toolchain is installed, else the proptest run of the same paths
  (`functions/webhook/tests/fuzz_stable.rs`, which `cargo test` also runs for 3 s per target).

## Found and fixed

- **A poison message took its batch-mates to the DLQ.** The processor stopped the whole batch at
  the first transient failure (AWS's FIFO rule) and returned every later record, of any show, for
  retry; records that kept sharing a batch with the poison message reached maxReceiveCount with it.
  First run of the poison case: the DLQ held all four messages. The processor now stops only the
  failing record's message group (the unit SQS orders); other shows' records are processed
  (`functions/processor/src/lib.rs`, test `a_transient_failure_holds_back_only_its_own_group`).

## Gaps

- The webhook's per-address rate limit cannot be exercised through `cargo lambda watch`'s function
  URLs (every client is 127.0.0.1); the suite sends API Gateway events instead.
"""




def write_report(out, results_path, fuzz_path):
    import platform

    data = json.loads(Path(results_path).read_text())
    fz = json.loads(Path(fuzz_path).read_text()) if fuzz_path and Path(fuzz_path).exists() else []
    f = data["figures"]
    ok = {r["name"].split(":")[0]: r["ok"] for r in data["results"]}
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())

    def mark(case):
        return {True: "met", False: "**not met**"}.get(ok.get(case), "not run")

    storm, outage_, poison_, api_, sec = (f.get(k, {}) for k in ("storm", "outage", "poison", "api", "secrets"))
    lines = [
        "# Reliability", "",
        "Written by `make reliability` (scripts/reliability.sh, tools/reliability.py); the quick cases",
        "also run in `make test` (`scripts/reliability.sh --quick`). Every case runs the real function",
        "binaries under `cargo lambda watch`, moto (SQS FIFO + DLQ, Secrets Manager), Postgres, the",
        "plex.tv/TMDB stubs and the SQS bridge (the end-to-end stack of tools/e2e.py), and ends with an",
        "exact check of the database and the queues.", "",
        f"- Command: `make reliability` (FUZZ_SECONDS={fz[0]['seconds'] if fz else 'n/a'})",
        f"- Machine: {platform.node()}, {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
        "| case | target | result | |", "|---|---|---|---|",
        f"| Duplicate storm | {storm.get('posts', 1000)} identical scrobbles -> 1 mark, 1 `success` row, nothing failed "
        f"| {storm.get('accepted_202')} x 202; log rows {storm.get('log_rows')} (the `duplicate` ones are the "
        f"{storm.get('replays')} replays past the dedup window); {storm.get('episodes_watched')} "
        f"episode watched; {storm.get('idempotency_keys')} idempotency key; DLQ {storm.get('dlq')} | {mark('duplicate storm')} |",
        f"| Database outage | {outage_.get('scrobbles', 500)} distinct scrobbles, Postgres killed mid-flow -> each "
        f"processed once, DLQ empty | Postgres down {outage_.get('down_seconds')} s after "
        f"{outage_.get('processed_before_stop')} processed, {outage_.get('posted_while_down')} posted meanwhile; "
        f"log rows {outage_.get('log_rows')}; items with >1 row {outage_.get('items_with_2plus_rows')}; "
        f"{outage_.get('episodes_watched')} watched; DLQ {outage_.get('dlq')}; "
        f"{outage_.get('rows_after_a_retry')} needed a retry | {mark('database outage')} |",
        f"| Poison message | in the DLQ after maxReceiveCount, batch-mates succeed, user sees it "
        f"| first batch {poison_.get('first_batch_records')} records; DLQ {poison_.get('dlq_shows')} after "
        f"{poison_.get('max_receive_count')} receives; batch-mates {poison_.get('batch_mate_log_rows')}; "
        f"poison log rows {poison_.get('poison_log_rows')}; in GET /api/plex/logs: "
        f"{poison_.get('visible_in_logs_api')}; in GET /api/plex/dead-letters: {poison_.get('visible_in_dead_letters')} "
        f"| {mark('poison message')} |",
    ]
    for t in fz:
        lines.append(f"| Fuzzing `{t['target']}` | >= 600 s, 0 crashes, 0 panics | {t['engine']}: {t['seconds']} s, "
                     f"{t['runs']:,} inputs, {t['crashes']} crashes ({t['detail']}) "
                     f"| {'met' if t['crashes'] == 0 and t['seconds'] >= 600 else '**not met**'} |")
    lines += [
        f"| API fuzzing (schemathesis) | every management route, valid token: 0 server errors, 0 schema "
        f"violations | {api_.get('operations')} operations, {api_.get('cases')} requests "
        f"(max {api_.get('max_examples')} examples each): {api_.get('server_errors')} server errors, "
        f"{api_.get('schema_violations')} schema violations | {mark('schemathesis')} |",
        f"| Secrets | Plex token, API token, webhook secret, encryption key: 0 hits | {sec.get('log_files')} log "
        f"files ({sec.get('log_bytes')} bytes), {sec.get('responses')} responses: {sec.get('hits')} hits "
        f"| {mark('secrets')} |", "",
    ]
    lines += NOTES.format(
        storm_n=storm.get("posts", 1000), replays=storm.get("replays", 20),
        down=outage_.get("down_seconds"), vis=outage_.get("visibility_timeout"),
        outage_max=outage_.get("max_receive_count"), poison_max=poison_.get("max_receive_count"),
    ).splitlines()
    Path(out).write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ main


def main(args):
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url or not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("reliability: DATABASE_URL and AWS_ENDPOINT_URL must be set (run scripts/reliability.sh)")
    for k, v in {"AWS_REGION": e2e.REGION, "AWS_DEFAULT_REGION": e2e.REGION, "AWS_ACCESS_KEY_ID": "test",
                 "AWS_SECRET_ACCESS_KEY": "test"}.items():
        os.environ.setdefault(k, v)
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True)
    quick = args.quick
    cases = set((args.cases or ("storm,poison,outage" if quick else "storm,poison,outage,api")).split(","))
    max_receive = 3 if quick else 5

    if cases & {"storm", "poison", "api"}:
        # Short visibility timeout: the poison message makes its max_receive rounds quickly.
        stack = e2e.start_stack(admin_url, visibility=4, max_receive=max_receive, stub=poison_stub(),
                                log_dir=LOG_DIR / "main", bridge=False)
        stack.bridge = None
        stacks.append(stack)
        webhook_url = configure(stack)
        if "storm" in cases:
            n = 200 if quick else 1000
            check(f"duplicate storm: {n} identical scrobbles -> one mark, one success row",
                  lambda: storm(stack, webhook_url, n, 5 if quick else 20))
        if "poison" in cases:
            check("poison message: DLQ after maxReceiveCount, batch-mates succeed",
                  lambda: poison(stack, webhook_url, max_receive))
        if "api" in cases:
            check("schemathesis: no server errors, no schema violations",
                  lambda: schemathesis(stack, 5 if quick else 60))
    if "outage" in cases:
        check("database outage: every scrobble processed exactly once, DLQ empty",
              lambda: outage(100 if quick else 500, 6 if quick else 15, 4, max_receive + 2))
    # Stop what runs, so the logs are complete, then scan them.
    for fn in reversed(e2e.cleanups):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            log(f"cleanup: {e}")
    e2e.cleanups.clear()
    if stacks:
        check("secrets: no token, secret or key in any log or response", lambda: secret_scan(stacks))
    if args.results:
        Path(args.results).write_text(json.dumps({"quick": quick, "figures": figures,
                                                  "results": [{"name": n, "ok": ok, "detail": d}
                                                              for n, ok, d in e2e.results]}, indent=2))


def run(args):
    code = 0
    try:
        main(args)
    except Exception as e:  # noqa: BLE001
        e2e.results.append(("setup", False, str(e)))
        print(f"FAIL setup: {e}", flush=True)
        import traceback
        traceback.print_exc()
    finally:
        for fn in reversed(e2e.cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {e}")
    passed = sum(1 for _, ok, _ in e2e.results if ok)
    failed = len(e2e.results) - passed
    if failed:
        code = 1
        log(f"logs of the failed run: {LOG_DIR}")
    print(f"RELIABILITY: {passed} passed, {failed} failed", flush=True)
    return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller figures, for make test")
    parser.add_argument("--cases", help="default: storm,poison,outage,api (--quick: no api)")
    parser.add_argument("--results", help="write the figures as JSON here (read, with --write-report)")
    parser.add_argument("--write-report", metavar="MD", help="only write the report from --results/--fuzz")
    parser.add_argument("--fuzz", help="fuzzing figures (JSON, from scripts/reliability.sh)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cli = parser.parse_args()
    if cli.write_report:
        write_report(cli.write_report, cli.results, cli.fuzz)
        sys.exit(0)
    sys.exit(run(cli))
