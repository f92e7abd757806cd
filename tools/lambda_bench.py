#!/usr/bin/env python3
"""`make bench`, the part criterion cannot measure: the functions' release binaries as Lambda
runs them, each exec'd under a stub Lambda Runtime API (this file), against Postgres and moto.

Measures, each next to a baseline from the same run:
  * cold start: exec -> first GET /runtime/invocation/next, and exec -> first response to a
    realistic event, against tools/hello-lambda (same release profile); medians of --rounds;
  * what each binary opens and connects to before its first /next (strace, when installed);
  * processor throughput: scrobbles of already mapped shows (distinct episodes) at 1, 4 and 16
    concurrent processor processes, against pgbench tpcb-like at the same client counts;
  * statements and round trips per message (a counting proxy in front of Postgres);
  * warm per-invocation cost (webhook from distinct source addresses) and peak RSS after
    1,000 invocations of each function; stripped binary sizes.

Writes the figures as JSON (--out); scripts/bench_report.py turns them into BENCHMARKS.md.
Run by scripts/bench.sh with DATABASE_URL (an admin URL) and AWS_ENDPOINT_URL (moto) set.
"""

import argparse
import base64
import json
import os
import queue
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
SERVER_UUID = "6f5c2b1e8d7a4c3b9e0f1a2b3c4d5e6f7a8b9c0d"
FUNCTIONS = ["webhook", "processor", "config", "logs", "mappings", "conflicts", "admin", "migrate"]
# Shows the tracker follows and Plex has mapped: SHOWS x SEASONS x EPISODES distinct episodes.
SHOWS, SEASONS, EPISODES = 96, 8, 24
CERT_DIRS = ("/etc/ssl", "/usr/share/ca-certificates", "/etc/pki", "/usr/lib/ssl", "/usr/local/share/ca-certificates")


def now_ns():
    return time.perf_counter_ns()


def log(msg):
    print(f"lambda_bench: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ stub Runtime API


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a killed function drops its connection; that is expected here


class Runtime:
    """The Lambda Runtime API for one process: hands out queued events on GET .../next and
    records when the first /next and each response arrive. Also answers PUTs (CloudFormation
    response URLs of the migrate function)."""

    def __init__(self):
        self.events = queue.Queue()
        self.responses = queue.Queue()
        self.first_next = None
        self.given = {}
        rt = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self):  # noqa: N802
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404)
                if rt.first_next is None:
                    rt.first_next = now_ns()
                event = rt.events.get()
                if event is None:  # shutting down: leave the runtime waiting
                    rt.events.put(None)
                    time.sleep(3600)
                    return
                rid = str(uuid.uuid4())
                deadline = int(time.time() * 1000) + 900_000
                data = json.dumps(event).encode()
                rt.given[rid] = now_ns()
                self.reply(200, data, [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", rid),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                    ("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=0"),
                ])

            def do_POST(self):  # noqa: N802
                t = now_ns()
                data = self.body()
                parts = self.path.split("/")
                if "invocation" in parts and parts[-1] in ("response", "error"):
                    rid = parts[-2]
                    rt.responses.put((rid, t, parts[-1], data))
                    return self.reply(202, b'{"status":"OK"}')
                if parts[-1] == "error":  # init error
                    rt.responses.put((None, t, "init-error", data))
                    return self.reply(202, b'{"status":"OK"}')
                self.reply(404)

            def do_PUT(self):  # noqa: N802
                self.body()
                self.reply(200)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event, timeout=60):
        """Queue one event; wait for its response. Returns (start_ns, end_ns, kind, body)."""
        self.events.put(event)
        rid, t, kind, body = self.responses.get(timeout=timeout)
        return self.given.get(rid), t, kind, body

    def close(self):
        self.events.put(None)
        self.server.shutdown()
        self.server.server_close()


class Process:
    """One function binary under its own stub Runtime API."""

    def __init__(self, binary, env, logdir, strace_to=None):
        self.runtime = Runtime()
        env = {**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.runtime.port}"}
        argv = [str(binary)]
        if strace_to:
            argv = ["strace", "-f", "-qq", "-e", "trace=openat,open,connect", "-o", str(strace_to)] + argv
        self.log = open(logdir / f"{Path(binary).parent.name}.log", "ab")
        self.started = now_ns()
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_first_next(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self.runtime.first_next is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.proc.args} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.proc.args}: no /next within {timeout}s")
            time.sleep(0.0002)
        return self.runtime.first_next - self.started

    def peak_rss_kib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.runtime.close()
        self.log.close()


# ------------------------------------------------------------------ local state


def psql(url, sql):
    out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url],
                         input=sql, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"psql: {out.stderr.strip()}")
    return out.stdout.strip()


def db_url(admin_url, name):
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def episodes_json(season_count, episode_count):
    seasons = []
    for s in range(1, season_count + 1):
        eps = [{"episodeNumber": e, "title": f"Episode {e}", "airDate": f"2015-{(s % 12) + 1:02d}-{min(e, 28):02d}",
                "watched": False, "dateWatched": None} for e in range(1, episode_count + 1)]
        seasons.append({"seasonNumber": s, "episodes": eps})
    return json.dumps(seasons)


def seed(url):
    """The tracker follows SHOWS shows, each mapped from a Plex show on SERVER_UUID; the
    integration is configured (auto-mark on)."""
    seasons = episodes_json(SEASONS, EPISODES).replace("'", "''")
    total = SEASONS * EPISODES
    psql(url, f"""
        INSERT INTO plex_config (user_id, plex_token, plex_server_url, plex_server_name, plex_server_uuid,
                                 plex_account_id, plex_account_name)
        VALUES (1, 'v1.bench.not-used-by-mapped-shows', 'http://127.0.0.1:9', 'bench-nas', '{SERVER_UUID}', 1, 'alice');
        INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons, watched_episodes, total_episodes)
        SELECT 500000 + i, 'Bench Show ' || i, '2015-01-01', 'Watching', '{seasons}'::jsonb, 0, {total}
          FROM generate_series(1, {SHOWS}) i;
        INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title, tmdb_id,
                                        tvshow_id, match_confidence, match_method, manually_confirmed)
        SELECT '{SERVER_UUID}', (90000 + i)::text, 'plex://show/bench' || i, 'Bench Show ' || i, 500000 + i,
               t.id, 1.0, 'tmdb_id', true
          FROM generate_series(1, {SHOWS}) i JOIN tvshows t ON t.tmdb_id = 500000 + i;
    """)


def aws(service):
    return boto3.client(service, endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def scrobble_payload(show, season, episode, viewed_at):
    """A Plex media.scrobble as Plex Media Server posts it (new Plex agent)."""
    key = 1_000_000 + show * 10_000 + season * 100 + episode
    return {
        "event": "media.scrobble", "user": True, "owner": True,
        "Account": {"id": 1, "thumb": "https://plex.tv/users/a1b2c3d4e5f60718/avatar?c=1700000000", "title": "alice"},
        "Server": {"title": "bench-nas", "uuid": SERVER_UUID},
        "Player": {"local": True, "publicAddress": "198.51.100.23", "title": "Living Room TV", "uuid": "r2k9x7c4v1b8n5m3"},
        "Metadata": {
            "librarySectionType": "show", "ratingKey": str(key), "key": f"/library/metadata/{key}",
            "parentRatingKey": str(80000 + show * 100 + season), "grandparentRatingKey": str(90000 + show),
            "guid": f"plex://episode/bench{key}", "parentGuid": f"plex://season/bench{show}-{season}",
            "grandparentGuid": f"plex://show/bench{show}",
            "type": "episode", "title": f"Episode {episode}", "grandparentTitle": f"Bench Show {show}",
            "parentTitle": f"Season {season}", "contentRating": "TV-14", "index": episode, "parentIndex": season,
            "viewCount": 1, "lastViewedAt": viewed_at, "year": 2015,
            "thumb": f"/library/metadata/{key}/thumb/1700000000",
            "grandparentThumb": f"/library/metadata/{90000 + show}/thumb/1700000000",
            "duration": 1380000, "originallyAvailableAt": "2015-03-24",
            "addedAt": 1690000000, "updatedAt": 1700000000,
            "Guid": [{"id": f"imdb://tt9{key}"}, {"id": f"tmdb://{key}"}, {"id": f"tvdb://{key}"}],
        },
    }


# The start of a real JPEG (SOI, APP0/JFIF) and end marker, padded to a typical 40 KiB thumb.
THUMB = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00H\x00H\x00\x00" + bytes(40 * 1024) + b"\xff\xd9"


def multipart(payload):
    boundary = "------------------------2a8ae6ad8e3c1f4b"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"payload\"\r\n"
        f"Content-Type: application/json\r\n\r\n{json.dumps(payload)}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"image.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + THUMB + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def http_event(method, path, query="", headers=None, body=b"", source_ip="198.51.100.23"):
    """An API Gateway HTTP API (payload 2.0) event."""
    hdrs = {"host": "k7q2x9w4ab.execute-api.us-east-1.amazonaws.com", "user-agent": "bench",
            "x-forwarded-for": source_ip, "x-forwarded-proto": "https", **(headers or {})}
    params = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": hdrs, "queryStringParameters": params or None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "k7q2x9w4ab",
            "domainName": "k7q2x9w4ab.execute-api.us-east-1.amazonaws.com", "domainPrefix": "k7q2x9w4ab",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": "bench"},
            "requestId": f"B{secrets.token_hex(6)}=", "routeKey": "$default", "stage": "$default",
            "time": "05/Dec/2026:18:30:00 +0000", "timeEpoch": int(time.time() * 1000),
        },
        "body": base64.b64encode(body).decode() if body else None,
        "isBase64Encoded": bool(body),
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin_dir = Path(args.bin_dir)
        self.logdir = Path(tempfile.mkdtemp(prefix="plexsync-bench-"))
        admin = os.environ["DATABASE_URL"]
        self.db_name = f"plexsync_test_{int(time.time())}_bench{secrets.token_hex(3)}"
        psql(admin, f"CREATE DATABASE {self.db_name}")
        self.admin_url, self.url = admin, db_url(admin, self.db_name)
        suffix = secrets.token_hex(4)
        sqs = aws("sqs")
        fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        self.queue_url = sqs.create_queue(QueueName=f"plexsync-bench-{suffix}.fifo", Attributes=fifo)["QueueUrl"]
        self.dlq_url = sqs.create_queue(QueueName=f"plexsync-bench-dlq-{suffix}.fifo", Attributes=fifo)["QueueUrl"]
        sm = aws("secretsmanager")
        self.api_token = secrets.token_urlsafe(32)
        self.webhook_secret = secrets.token_urlsafe(24)
        ids = {}
        for var, name, value in [("ENCRYPTION_KEY_SECRET_ID", "encryption-key", secrets.token_hex(32)),
                                 ("API_TOKEN_SECRET_ID", "api-token", self.api_token),
                                 ("WEBHOOK_SECRET_ID", "webhook-secret", self.webhook_secret)]:
            sid = f"plexsync-bench/{suffix}/{name}"
            sm.create_secret(Name=sid, SecretString=value)
            ids[var] = sid
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **ids,
            "DATABASE_URL": self.url, "QUEUE_URL": self.queue_url,
            "PUBLIC_BASE_URL": "http://127.0.0.1:9000/lambda-url/webhook",
            # Never called for mapped shows: a closed port makes any call fail loudly.
            "TMDB_BASE_URL": "http://127.0.0.1:9/", "TMDB_API_TOKEN": "bench-tmdb-token",
            "PLEX_TV_BASE_URL": "http://127.0.0.1:9/",
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"], "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "MAX_RECEIVE_COUNT": "5", "DLQ_URL": self.dlq_url,
            "RUST_LOG": "info",
        }
        migrate = subprocess.run([str(self.binary("migrate"))], env=self.env, capture_output=True, text=True)
        if migrate.returncode:
            raise RuntimeError(f"migrate: {migrate.stdout}{migrate.stderr}")
        seed(self.url)
        # Episodes handed out so far, per show: every scrobble marks a distinct episode.
        self.next_episode = [0] * (SHOWS + 1)
        self.message_template = None
        self.results = {"rounds": args.rounds, "invocations": args.invocations}

    def binary(self, name):
        return self.bin_dir / name / "bootstrap"

    def close(self):
        try:
            psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        except RuntimeError as e:
            log(f"could not drop {self.db_name}: {e}")

    # ---- events

    def take_episode(self, show):
        n = self.next_episode[show]
        if n >= SEASONS * EPISODES:
            raise RuntimeError(f"show {show} has no unmarked episode left; raise SEASONS/EPISODES")
        self.next_episode[show] = n + 1
        return 1 + n // EPISODES, 1 + n % EPISODES

    def webhook_event(self, show, source_ip):
        season, episode = self.take_episode(show)
        body, ctype = multipart(scrobble_payload(show, season, episode, int(time.time())))
        return http_event("POST", "/api/plex/webhook", f"secret={self.webhook_secret}",
                          {"content-type": ctype, "user-agent": "PlexMediaServer/1.41.3.9314-a0bfb8370"},
                          body, source_ip)

    def queue_message(self, show):
        """A queue message body for a distinct episode of `show`, in the webhook's own format
        (taken from a message the webhook binary enqueued, with the episode changed)."""
        season, episode = self.take_episode(show)
        payload = scrobble_payload(show, season, episode, int(time.time()))
        msg = json.loads(json.dumps(self.message_template))
        meta = payload["Metadata"]
        ev = msg["event"]
        ev["season"] = season
        ev["itemRatingKey"] = meta["ratingKey"]
        ev["show"].update(ratingKey=meta["grandparentRatingKey"], guid=meta["grandparentGuid"],
                          title=meta["grandparentTitle"])
        ev["episode"].update(ratingKey=meta["ratingKey"], guid=meta["guid"], season=season,
                             number=episode, title=meta["title"],
                             ids={"tmdb": int(meta["ratingKey"]), "tvdb": int(meta["ratingKey"]),
                                  "imdb": f"tt9{meta['ratingKey']}"})
        msg["raw"] = payload
        return msg

    def sqs_event(self, messages):
        records = []
        for m in messages:
            ev = m["event"]
            group = f"{ev['serverUuid']}:{ev['show']['ratingKey']}"
            records.append({
                "messageId": str(uuid.uuid4()), "receiptHandle": secrets.token_hex(16),
                "body": json.dumps(m),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000)),
                               "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
                               "MessageGroupId": group, "MessageDeduplicationId": secrets.token_hex(16),
                               "SequenceNumber": "18849496460467696128"},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:plexsync-events.fifo", "awsRegion": REGION,
            })
        return {"Records": records}

    def api_event(self, name):
        if name == "admin":
            return http_event("GET", "/")
        path = {"config": "/api/plex/config", "logs": "/api/plex/logs", "mappings": "/api/plex/mappings",
                "conflicts": "/api/plex/conflicts"}[name]
        return http_event("GET", path, headers={"authorization": f"Bearer {self.api_token}"})

    def migrate_event(self):
        return {"RequestType": "Update", "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:migrate",
                "ResponseURL": f"http://127.0.0.1:{{port}}/cfn-response", "StackId":
                "arn:aws:cloudformation:us-east-1:123456789012:stack/plexsync/1", "RequestId": str(uuid.uuid4()),
                "LogicalResourceId": "Migrations", "PhysicalResourceId": "plexsync-migrations",
                "ResourceType": "Custom::Migrations", "ResourceProperties": {"ServiceToken": "x"},
                "OldResourceProperties": {"ServiceToken": "x"}}

    def event_for(self, name, proc, i=0):
        if name == "hello-lambda":
            return {"hello": i}
        if name == "webhook":
            return self.webhook_event(1 + i % SHOWS, f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        if name == "processor":
            return self.sqs_event([self.queue_message(1 + i % SHOWS)])
        if name == "migrate":
            ev = self.migrate_event()
            ev["ResponseURL"] = f"http://127.0.0.1:{proc.runtime.port}/cfn-response"
            return ev
        return self.api_event(name)

    @staticmethod
    def check(name, kind, body):
        if kind != "response":
            raise RuntimeError(f"{name}: {kind}: {body[:300]!r}")
        data = json.loads(body) if body else None
        if isinstance(data, dict) and "statusCode" in data and data["statusCode"] >= 400:
            raise RuntimeError(f"{name}: status {data['statusCode']}: {body[:300]!r}")
        if name == "processor" and data.get("batchItemFailures"):
            raise RuntimeError(f"processor failed records: {body[:300]!r}")
        return data

    # ---- the message format, from the webhook itself

    def learn_message_format(self):
        proc = Process(self.binary("webhook"), self.env, self.logdir)
        try:
            proc.wait_first_next()
            _, _, kind, body = proc.runtime.invoke(self.webhook_event(SHOWS, "192.0.2.10"))
            self.check("webhook", kind, body)
        finally:
            proc.stop()
        got = aws("sqs").receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=5)
        msgs = got.get("Messages") or []
        if not msgs:
            raise RuntimeError("the webhook enqueued nothing")
        self.message_template = json.loads(msgs[0]["Body"])

    # ---- cold start

    def cold_starts(self):
        names = ["hello-lambda"] + FUNCTIONS
        samples = {n: {"next": [], "first_response": []} for n in names}
        for r in range(self.args.rounds):
            for name in names:
                proc = Process(self.binary(name), self.env, self.logdir)
                try:
                    samples[name]["next"].append(proc.wait_first_next())
                    event = self.event_for(name, proc, 1000 + r)
                    _, end, kind, body = proc.runtime.invoke(event)
                    self.check(name, kind, body)
                    samples[name]["first_response"].append(end - proc.started)
                finally:
                    proc.stop()
            log(f"cold starts: round {r + 1}/{self.args.rounds}")
        self.results["cold_start_ns"] = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
        self.results["cold_start_samples_ns"] = samples

    def startup_syscalls(self):
        """What each binary opens and connects to before its first /next."""
        if not shutil_which("strace"):
            self.results["startup_syscalls"] = None
            return
        out = {}
        for name in ["hello-lambda"] + FUNCTIONS:
            trace = self.logdir / f"{name}.strace"
            proc = Process(self.binary(name), self.env, self.logdir, strace_to=trace)
            try:
                proc.wait_first_next()
                time.sleep(0.2)  # let strace flush
            finally:
                proc.stop()
            opens = cert_opens = 0
            connects = set()
            for line in trace.read_text().splitlines():
                if "openat(" in line or " open(" in line:
                    opens += 1
                    if any(d in line for d in CERT_DIRS):
                        cert_opens += 1
                elif "connect(" in line and "sin_port" in line:
                    port = line.split("htons(")[1].split(")")[0]
                    addr = line.split('inet_addr("')[1].split('"')[0] if "inet_addr" in line else "?"
                    connects.add(f"{addr}:{port}")
            runtime = f"127.0.0.1:{proc.runtime.port}"
            out[name] = {"opens": opens, "cert_opens": cert_opens,
                         "other_connects": sorted(c for c in connects if c != runtime)}
        self.results["startup_syscalls"] = out

    # ---- warm: per-invocation cost and peak RSS after N invocations

    def warm(self):
        n = self.args.invocations
        out = {}
        for name in ["hello-lambda"] + FUNCTIONS:
            if name == "migrate":
                continue  # one invocation per deploy; nothing to keep warm
            proc = Process(self.binary(name), self.env, self.logdir)
            try:
                proc.wait_first_next()
                durations = []
                last_purge = 0.0
                for i in range(n):
                    if name == "webhook" and time.monotonic() - last_purge > 61:
                        # moto's FIFO send slows down as its queue grows: empty it (untimed; moto
                        # allows one purge a minute).
                        aws("sqs").purge_queue(QueueUrl=self.queue_url)
                        last_purge = time.monotonic()
                    start, end, kind, body = proc.runtime.invoke(self.event_for(name, proc, i))
                    self.check(name, kind, body)
                    durations.append(end - start)
                out[name] = {"median_ns": statistics.median(durations),
                             "p99_ns": sorted(durations)[int(len(durations) * 0.99) - 1],
                             "peak_rss_kib": proc.peak_rss_kib()}
            finally:
                proc.stop()
            log(f"warm: {name} {n} invocations, median {out[name]['median_ns'] / 1e6:.2f} ms, "
                f"peak RSS {out[name]['peak_rss_kib'] / 1024:.1f} MiB")
        self.results["warm"] = out

    # ---- processor throughput

    def throughput(self):
        out, baseline = {}, {}
        current = self.binary("processor")
        for clients in self.args.clients:
            if self.args.baseline_processor:
                # Interleaved with the current binary (current, baseline, baseline, current: neither
                # always runs first), half the messages each time, against the same pgbench figure.
                earlier = Path(self.args.baseline_processor)
                runs = {current: [], earlier: []}
                for binary in (current, earlier, earlier, current):
                    runs[binary].append(self.throughput_of(binary, clients, self.args.messages // 2))
                out[clients], baseline[clients] = (combined(runs[current]), combined(runs[earlier]))
            else:
                out[clients] = self.throughput_of(current, clients, self.args.messages)
            tps = self.pgbench(clients)
            for runs in (out, baseline):
                if clients in runs:
                    runs[clients]["pgbench_tps"] = tps
            log(f"throughput: {clients} processors {out[clients]['per_second']:.0f} msg/s"
                + (f" (baseline {baseline[clients]['per_second']:.0f})" if baseline else "")
                + f", pgbench {tps:.0f} tps")
        self.results["throughput"] = out
        if baseline:
            self.results["throughput_baseline"] = baseline
            self.results["baseline_label"] = self.args.baseline_label
        marked = psql(self.url, "SELECT count(*) FROM plex_webhook_logs WHERE status = 'success'")
        self.results["throughput_success_rows"] = int(marked)

    def throughput_of(self, binary, clients, messages):
        """Messages per second of `clients` instances of the processor `binary` at once."""
        per = max(messages // clients, 40)
        procs = [Process(binary, self.env, self.logdir) for _ in range(clients)]
        try:
            for p in procs:
                p.wait_first_next()
            # Shows are split between the instances, as FIFO message groups are.
            batches = []
            for i, _ in enumerate(procs):
                shows = [s for s in range(1, SHOWS + 1) if s % clients == i % clients] or [1 + i % SHOWS]
                msgs = [self.queue_message(shows[k % len(shows)]) for k in range(per)]
                batches.append([self.sqs_event(msgs[k:k + 10]) for k in range(0, per, 10)])
            errors = []

            def drive(proc, events):
                try:
                    for ev in events:
                        _, _, kind, body = proc.runtime.invoke(ev, timeout=120)
                        self.check("processor", kind, body)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=drive, args=(p, b)) for p, b in zip(procs, batches)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            if errors:
                raise errors[0]
        finally:
            for p in procs:
                p.stop()
        total = per * clients
        return {"messages": total, "seconds": elapsed, "per_second": total / elapsed}

    def pgbench(self, clients):
        name = f"{self.db_name}_pgbench"
        url = db_url(self.admin_url, name)
        if clients == self.args.clients[0]:
            psql(self.admin_url, f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}")
            subprocess.run(["pgbench", "-i", "-q", "-s", "1", url], check=True, capture_output=True)
        run = subprocess.run(["pgbench", "-n", "-b", "tpcb-like", "-c", str(clients), "-j", str(min(clients, 2)),
                              "-T", str(self.args.pgbench_seconds), url], capture_output=True, text=True, check=True)
        tps = [line for line in run.stdout.splitlines() if line.startswith("tps")]
        if clients == self.args.clients[-1]:
            psql(self.admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return float(tps[0].split("=")[1].split()[0])

    # ---- statements and round trips per message

    def round_trips(self):
        self.results["per_message"] = self.round_trips_of(self.binary("processor"))
        if self.args.baseline_processor:
            self.results["per_message_baseline"] = self.round_trips_of(Path(self.args.baseline_processor))

    def round_trips_of(self, binary):
        proxy = PgCounter(urlsplit(self.url).port or 5432)
        parts = urlsplit(self.url)
        netloc = parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc.split("@")[-1] else parts.netloc
        # Plaintext through the proxy: with sslmode=prefer (the default) the processor encrypts
        # whenever the server offers TLS, and there would be nothing to count.
        query = "&".join([q for q in parts.query.split("&") if q and not q.startswith("sslmode=")]
                         + ["sslmode=disable"])
        env = {**self.env, "DATABASE_URL": urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}",
                                                                     query=query))}
        proc = Process(binary, env, self.logdir)
        try:
            proc.wait_first_next()
            # Warm up: connections made, nothing prepared is reused across messages anyway.
            _, _, kind, body = proc.runtime.invoke(self.sqs_event([self.queue_message(1)]))
            self.check("processor", kind, body)
            per_batch = {}
            for size in (1, 10):
                proxy.reset()
                batches = 5
                for b in range(batches):
                    _, _, kind, body = proc.runtime.invoke(
                        self.sqs_event([self.queue_message(2 + (b % (SHOWS - 2))) for _ in range(size)]))
                    self.check("processor", kind, body)
                c = proxy.snapshot()
                n = batches * size
                per_batch[size] = {k: v / n for k, v in c.items()}
        finally:
            proc.stop()
            proxy.close()
        return per_batch

    def sizes(self):
        self.results["binary_bytes"] = {n: self.binary(n).stat().st_size for n in ["hello-lambda"] + FUNCTIONS}


def shutil_which(cmd):
    from shutil import which
    return which(cmd)


def combined(runs):
    """Throughput runs of one binary as one figure: all their messages over all their time."""
    messages, seconds = sum(r["messages"] for r in runs), sum(r["seconds"] for r in runs)
    return {"messages": messages, "seconds": seconds, "per_second": messages / seconds, "runs": len(runs)}


class PgCounter:
    """A TCP proxy in front of Postgres that counts the client's protocol messages: each Execute
    or simple Query is a statement; a round trip is each read of the client's side that ends a
    Sync or simple Query (statements pipelined back to back arrive in one read and count once:
    the client's next message can only follow the server's answer). A pipelined burst that the
    client writes in two pieces (the processor's connection task may flush between two of its
    queries on the multi-threaded runtime) counts twice, so the figure is an upper bound."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self.counts = {}
        self.reset()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.open = True
        threading.Thread(target=self.accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.counts = {"round_trips": 0, "statements": 0, "parses": 0, "transactions": 0}

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def accept(self):
        while self.open:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self.pipe, args=(server, client, None), daemon=True).start()
            threading.Thread(target=self.pipe, args=(client, server, self.count), daemon=True).start()

    def pipe(self, src, dst, counter):
        buf = b""
        started = False
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if counter is None:
                    continue
                buf += data
                if not started:  # the startup message has no type byte
                    if len(buf) < 4:
                        continue
                    n = struct.unpack("!I", buf[:4])[0]
                    if len(buf) < n:
                        continue
                    buf, started = buf[n:], True
                waits = False
                while len(buf) >= 5:
                    n = struct.unpack("!I", buf[1:5])[0]
                    if len(buf) < 1 + n:
                        break
                    waits |= counter(buf[:1], buf[5:1 + n])
                    buf = buf[1 + n:]
                if waits:
                    with self.lock:
                        self.counts["round_trips"] += 1
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self, kind, body):
        """Counts one message; says whether the client waits for an answer after it."""
        with self.lock:
            c = self.counts
            if kind == b"Q":
                c["statements"] += 1
                if body[:6].upper() in (b"COMMIT", b"BEGIN\x00") or body[:5].upper() == b"BEGIN":
                    c["transactions"] += body[:6].upper() == b"COMMIT"
            elif kind == b"E":
                c["statements"] += 1
            elif kind == b"P":
                c["parses"] += 1
        return kind in (b"Q", b"S")

    def close(self):
        self.open = False
        self.sock.close()


# Step name -> Bench method, in the order they run.
STEPS = {"sizes": "sizes", "syscalls": "startup_syscalls", "cold": "cold_starts",
         "round_trips": "round_trips", "warm": "warm", "throughput": "throughput"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "lambda"))
    ap.add_argument("--out", default=str(ROOT / "target" / "bench" / "lambda.json"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--invocations", type=int, default=1000)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--messages", type=int, default=2000, help="processor messages per client count")
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--only", nargs="+", choices=list(STEPS), default=list(STEPS))
    ap.add_argument("--baseline-processor", help="an earlier processor binary, measured in the throughput and "
                    "round-trip steps beside the current one (interleaved, same pgbench)")
    ap.add_argument("--baseline-label", default="baseline", help="what the baseline binary is (a commit)")
    args = ap.parse_args()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    # A partial run (--only) updates the figures of an earlier one.
    if out.exists() and set(args.only) != set(STEPS):
        bench.results = {**json.loads(out.read_text()), **bench.results}
    try:
        bench.learn_message_format()
        for name in STEPS:
            if name in args.only:
                log(f"{name} ...")
                getattr(bench, STEPS[name])()
                out.write_text(json.dumps(bench.results, indent=2) + "\n")  # keep what is done
    finally:
        bench.close()
    log(f"wrote {out} (function logs in {bench.logdir})")


if __name__ == "__main__":
    main()
