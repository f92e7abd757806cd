#!/usr/bin/env python3
"""End-to-end test of the local stack: the real function binaries under `cargo lambda watch`
behind tools/router.py (the API Gateway paths on one origin), moto (SQS + Secrets Manager), a
fresh Postgres database, plex.tv / TMDB / Plex server stubs (tools/stubs.py) and the SQS bridge
(tools/bridge.py).

    POST /api/plex/config (API token)            -> 200, webhookUrl on the router's origin
    POST <webhookUrl> multipart scrobble + thumb -> 202
    bridge -> processor                          -> The Office S01E01 watched in Postgres
    GET /api/plex/logs                           -> one success row for it (as in Postgres)
    PUT /api/senders/jellyfin, /api/senders/emby -> 200, each sender's webhookUrl
    POST Jellyfin JSON + Emby multipart scrobbles -> 202, S01E04 and S01E03 watched
plus the bridge's own contract against a fake processor (delete only what did not fail), the
migrate binary in Lambda mode answering a CloudFormation custom-resource request, and the admin
page's browser scenarios (tests/browser/admin.test.mjs, headless Chromium) against a second
stack with an empty database.

Run through scripts/e2e.sh (which makes sure Postgres, moto and cargo-lambda are there), or
directly with the venv python and DATABASE_URL / AWS_ENDPOINT_URL set. Prints
`E2E: N passed, M failed` last and exits non-zero on any failure. Everything it starts
(watch, bridge, stubs, the database, the queues and secrets) is removed on exit.
"""

import base64
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import boto3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import router  # noqa: E402
import stubs  # noqa: E402
import world  # noqa: E402

LOG_DIR = ROOT / ".dev" / "e2e"
REGION = "us-east-1"
# The template's redrive policy: the processor logs a failure on this receive.
MAX_RECEIVE_COUNT = 5
# The first request to each function compiles it under watch (debug build).
FIRST_REQUEST_TIMEOUT = float(os.environ.get("E2E_FIRST_REQUEST_TIMEOUT", 900))
# From the 202 to the episode being marked (includes the processor's first build).
PROCESSING_TIMEOUT = float(os.environ.get("E2E_PROCESSING_TIMEOUT", 600))

results = []  # (name, ok, detail)
cleanups = []  # run in reverse order


def log(msg):
    print(f"e2e: {msg}", file=sys.stderr, flush=True)


def check(name, fn):
    """Runs one check; a failure is recorded, not raised, so the remaining checks still run
    when they can."""
    started = time.monotonic()
    try:
        detail = fn() or ""
        results.append((name, True, detail))
        print(f"PASS {name} ({time.monotonic() - started:.1f} s) {detail}", flush=True)
        return True
    except Exception as e:  # noqa: BLE001 (a test harness reports everything)
        results.append((name, False, str(e)))
        print(f"FAIL {name}: {e}", flush=True)
        if os.environ.get("E2E_VERBOSE"):
            traceback.print_exc()
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws(service):
    return boto3.client(service, region_name=REGION)


def http(method, url, body=None, headers=None, timeout=30):
    """(status, headers, parsed JSON or raw bytes)."""
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, hdrs, json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, hdrs, raw


def psql(url, sql):
    out = subprocess.run(
        ["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


def db_url_for(base, name):
    u = urlparse(base)
    return urlunparse(u._replace(path=f"/{name}"))


# ------------------------------------------------------------------ resources


def fresh_database(admin_url):
    name = f"plexsync_e2e_{int(time.time())}_{secrets.token_hex(5)}"
    psql(admin_url, f'CREATE DATABASE "{name}"')
    cleanups.append(lambda: psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    url = db_url_for(admin_url, name)
    subprocess.run(
        ["cargo", "run", "-q", "-p", "migrate"], cwd=ROOT, check=True,
        env={**os.environ, "DATABASE_URL": url},
    )
    return url


def runtime_role(admin_url, db_url):
    """As on AWS: the migrate function, given the owner's URL (OWNER_DATABASE_URL) and the
    functions' (DATABASE_URL), creates the runtime role and grants it DML only. Returns the
    runtime role's URL."""
    u = urlparse(db_url)
    role = f"{u.path.lstrip('/')}_rt"
    runtime_url = urlunparse(u._replace(
        netloc=f"{role}:{secrets.token_hex(16)}@{u.hostname}:{u.port or 5432}"))
    # Registered before the database's own cleanup runs (cleanups run in reverse order, and the
    # database was registered earlier), so the role is dropped after the database.
    cleanups.insert(0, lambda: psql(admin_url, f'DROP ROLE IF EXISTS "{role}"'))
    subprocess.run(
        ["cargo", "run", "-q", "-p", "migrate"], cwd=ROOT, check=True,
        env={**os.environ, "OWNER_DATABASE_URL": db_url, "DATABASE_URL": runtime_url},
    )
    return runtime_url


def fifo_queue(suffix, visibility=30, max_receive=MAX_RECEIVE_COUNT):
    """(queue URL, DLQ URL): a FIFO queue redriving to its DLQ after max_receive receives, as the
    template sets it up."""
    sqs = aws("sqs")
    dlq = sqs.create_queue(QueueName=f"plexsync-e2e-dlq-{suffix}.fifo",
                           Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(
        QueueName=f"plexsync-e2e-{suffix}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": max_receive}),
        },
    )["QueueUrl"]
    cleanups.append(lambda: (sqs.delete_queue(QueueUrl=url), sqs.delete_queue(QueueUrl=dlq)))
    return url, dlq


def secret(name, value):
    sm = aws("secretsmanager")
    sm.create_secret(Name=name, SecretString=value)
    cleanups.append(lambda: sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True))
    return name


def start(name, argv, env, log_dir=None):
    """Starts a process in its own process group (so watch's children stop with it)."""
    log_dir = log_dir or LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    logfile = open(log_dir / f"{name}.log", "w")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        logfile.close()

    cleanups.append(stop)
    return proc


def wait_for_port(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


# ------------------------------------------------------------------ payloads


def scrobble_payload():
    """The Office (US) S01E01 scrobbled by the server owner just now (new Plex agent: the Guid
    array holds the episode's ids)."""
    payload = world.webhook("episode_scrobble")
    payload["Metadata"]["lastViewedAt"] = int(time.time())
    return payload


# JPEG-framed bytes (SOI, JFIF header, ..., EOI): Plex attaches the poster as the `thumb` part.
THUMB = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f"
    "141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080001000101"
    "011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffda0008010100003f00d2cf20ffd9"
)


def multipart(payload, thumb=THUMB):
    """multipart/form-data as Plex Media Server sends it: `payload` (JSON text) and `thumb`."""
    boundary = f"------------------------{secrets.token_hex(8)}"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="payload"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{json.dumps(payload)}\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="thumb"; filename="image.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + thumb + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def emby_multipart(payload):
    """multipart/form-data as Emby sends it with "Request content type: multipart/form-data":
    the JSON in a `data` field."""
    boundary = f"----EmbyBoundary{secrets.token_hex(8)}"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="data"\r\n\r\n'
        f"{json.dumps(payload)}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    return body, f"multipart/form-data; boundary={boundary}"


def seed_office(db_url):
    """The tracker already follows The Office (US), season 1 unwatched."""
    show = world.response("tmdb", "/3/tv/2316")
    seasons = world.office_tracker_seasons()
    total = sum(len(s["episodes"]) for s in seasons)
    seasons_sql = json.dumps(seasons).replace("'", "''")
    psql(db_url, "INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons, "
                 "watched_episodes, total_episodes) VALUES "
                 f"({show['id']}, 'The Office', '{show['first_air_date']}', 'Watching', "
                 f"'{seasons_sql}'::jsonb, 0, {total})")


def tracker_date(unix):
    """A Unix time as the tracker stores `dateWatched` (RFC 3339, milliseconds, Z)."""
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def decrypt_token(stored, key_hex):
    """The plaintext of a Plex token as shared/src/crypto.rs stores it:
    `v1.<key id>.<base64url(nonce | ciphertext+tag)>`, the header authenticated as AAD. Fails
    unless it was sealed with this key."""
    version, key_id, data = stored.split(".", 2)
    key = bytes.fromhex(key_hex)
    expected_id = hashlib.sha256(b"plexsync key id\0" + key).hexdigest()[:8]
    assert (version, key_id) == ("v1", expected_id), f"header {version}.{key_id}"
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return AESGCM(key).decrypt(raw[:12], raw[12:], f"{version}.{key_id}".encode()).decode()


def episode_state(db_url, season, number):
    return psql(db_url, f"""
        SELECT ep->>'watched' || ' ' || coalesce(ep->>'dateWatched', '-')
        FROM tvshows, jsonb_array_elements(seasons) s, jsonb_array_elements(s->'episodes') ep
        WHERE tmdb_id = 2316 AND (s->>'seasonNumber')::int = {season}
          AND (ep->>'episodeNumber')::int = {number}""")


# ------------------------------------------------------------------ bridge contract


class FakeProcessor(BaseHTTPRequestHandler):
    """Answers the invoke API like the processor would: fails the records whose body says
    "fail", or the whole invocation when told to."""

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.events.append(event)
        if self.server.mode == "error":
            body, status = b'{"errorType":"Timeout","errorMessage":"Task timed out"}', 200
        else:
            failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                        if json.loads(r["body"]).get("fail")]
            body, status = json.dumps({"batchItemFailures": failures}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def bridge_contract():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeProcessor)
    server.events, server.mode = [], "partial"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cleanups.append(server.shutdown)
    queue, _ = fifo_queue(f"bridge-{secrets.token_hex(4)}", visibility=2)
    sqs = aws("sqs")
    for i, fail in enumerate([False, True, False]):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"n": i, "fail": fail}),
                         MessageGroupId=f"{world.SERVER_UUID}:48200", MessageDeduplicationId=f"d{i}")
    invoke_url = f"http://127.0.0.1:{server.server_address[1]}/2015-03-31/functions/processor/invocations"
    bridge = start("bridge-contract", [sys.executable, "tools/bridge.py", "--queue-url", queue,
                                       "--invoke-url", invoke_url, "--wait", "1"], os.environ.copy())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not server.events:
        time.sleep(0.2)
    if not server.events:
        raise AssertionError("the bridge never invoked the processor")
    event = server.events[0]
    rec = event["Records"][0]
    bodies = [json.loads(r["body"])["n"] for r in event["Records"]]
    assert bodies == [0, 1, 2], f"one batch, in group order: {bodies}"
    assert rec["eventSource"] == "aws:sqs" and rec["eventSourceARN"].endswith(".fifo"), rec
    assert rec["attributes"]["MessageGroupId"] == f"{world.SERVER_UUID}:48200", rec["attributes"]
    assert rec["attributes"]["ApproximateReceiveCount"] == "1", rec["attributes"]
    assert {"messageId", "receiptHandle", "md5OfBody", "awsRegion", "messageAttributes"} <= rec.keys()
    # The failed record comes back after the visibility timeout, alone, with a higher count.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(server.events) < 2:
        time.sleep(0.2)
    assert len(server.events) >= 2, "the failed record was not redelivered"
    again = server.events[1]["Records"]
    assert [json.loads(r["body"])["n"] for r in again] == [1], again
    assert again[0]["attributes"]["ApproximateReceiveCount"] == "2", again[0]["attributes"]
    # Now fail whole invocations: nothing may be deleted.
    server.mode = "error"
    seen = len(server.events)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(server.events) < seen + 1:
        time.sleep(0.2)
    os.killpg(bridge.pid, signal.SIGTERM)
    bridge.wait(10)
    time.sleep(2.5)  # past the visibility timeout
    left = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"])["n"] for m in left] == [1], \
        f"only the failed record stays on the queue, got {[m['Body'] for m in left]}"
    return "batch in order; only batchItemFailures kept; invoke error deletes nothing"


# ------------------------------------------------------------------ the stack

# v4 read access tokens are JWTs; this one only has to look like one.
TMDB_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJlMmUiLCJzY29wZXMiOlsiYXBpX3JlYWQiXX0.c2lnbmF0dXJl"
PLEX_TOKEN = "pLxT0k3n-e2e-abcdefghijkl"


class Stack:
    """What start_stack brought up: URLs, the secret values (so a suite can look for them in
    what it captured) and the processes."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.auth = {"Authorization": f"Bearer {self.api_token}"}

    def url(self, function, path=""):
        return f"{self.base}/lambda-url/{function}{path}"


def start_stack(admin_url, *, db_url=None, seed=seed_office, visibility=30, max_receive=MAX_RECEIVE_COUNT,
                stub=None, log_dir=None, bridge=True, with_router=False):
    """The functions under `cargo lambda watch` on a free port, a fresh database (or db_url,
    already migrated), a FIFO queue with its DLQ, the three secrets in moto, the plex.tv/TMDB
    stubs (or `stub`, a server like stubs.serve() returns) and the bridge (unless bridge=False).
    with_router: tools/router.py in front, on its own free port (`origin`: the page at /, the API
    under /api/plex/..., as `make dev` and API Gateway serve them), which is then also the
    webhook URL's base. Everything is removed again by the cleanups."""
    log_dir = log_dir or LOG_DIR
    suffix = secrets.token_hex(4)
    runtime_url = None
    if db_url is None:
        db_url = fresh_database(admin_url)
        runtime_url = runtime_role(admin_url, db_url)
    if seed:
        seed(db_url)
    queue_url, dlq_url = fifo_queue(suffix, visibility, max_receive)
    api_token = secrets.token_urlsafe(32)
    values = {
        "ENCRYPTION_KEY_SECRET_ID": secrets.token_hex(32),
        "API_TOKEN_SECRET_ID": api_token,
        # As the template creates it: a generated value the config function adopts.
        "WEBHOOK_SECRET_ID": secrets.token_urlsafe(32),
    }
    names = {"ENCRYPTION_KEY_SECRET_ID": "encryption-key", "API_TOKEN_SECRET_ID": "api-token",
             "WEBHOOK_SECRET_ID": "webhook-secret"}
    ids = {var: secret(f"plexsync-e2e/{suffix}/{names[var]}", value) for var, value in values.items()}
    if runtime_url:
        # As on AWS: the functions get secret ids, read at cold start, and connect as the
        # runtime role (DML only); the migrate function gets the owner's URL besides.
        ids["DATABASE_URL_SECRET_ID"] = secret(f"plexsync-e2e/{suffix}/database-url", runtime_url)
        ids["TMDB_API_TOKEN_SECRET_ID"] = secret(f"plexsync-e2e/{suffix}/tmdb-token", TMDB_TOKEN)
    if stub is None:
        stub = stubs.serve()
        cleanups.append(stub.shutdown)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    origin = f"http://127.0.0.1:{free_port()}" if with_router else None
    env = {
        **os.environ,
        **ids,
        "DATABASE_URL": db_url,
        "QUEUE_URL": queue_url,
        "DLQ_URL": dlq_url,
        "MAX_RECEIVE_COUNT": str(max_receive),
        "PUBLIC_BASE_URL": origin or f"{base}/lambda-url/webhook",
        "TMDB_BASE_URL": stub.base_url,
        "TMDB_API_TOKEN": TMDB_TOKEN,
        "PLEX_TV_BASE_URL": stub.base_url,
        "RUST_LOG": "info",
    }
    env.pop("PLEX_ALLOWED_CIDRS", None)
    if runtime_url:
        env["OWNER_DATABASE_URL"] = env.pop("DATABASE_URL")
        env.pop("TMDB_API_TOKEN")
    log(f"database {db_url.rsplit('/', 1)[1]}, queue {queue_url.rsplit('/', 1)[1]}, "
        f"stubs {stub.base_url}, watch on :{port}; logs in {log_dir}")
    # --ignore-changes: a test runs the code it built; a file written or edited in the
    # checkout meanwhile must not restart a function halfway through a scenario.
    watch = start("watch", ["cargo", "lambda", "watch", "--ignore-changes",
                            "--invoke-address", "127.0.0.1", "--invoke-port", str(port)],
                  env, log_dir)
    wait_for_port(port, watch, timeout=120)
    if bridge:
        bridge = start("bridge", [sys.executable, "tools/bridge.py", "--queue-url", queue_url,
                                  "--invoke-url", f"{base}/2015-03-31/functions/processor/invocations"],
                       env, log_dir)
    if origin:
        server = router.serve(int(origin.rsplit(":", 1)[1]), base)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        cleanups.append(server.shutdown)
        log(f"router on {origin}")
    return Stack(base=base, origin=origin, port=port, db_url=db_url, runtime_url=runtime_url,
                 queue_url=queue_url, dlq_url=dlq_url, visibility=visibility,
                 api_token=api_token, encryption_key=values["ENCRYPTION_KEY_SECRET_ID"],
                 webhook_secret=values["WEBHOOK_SECRET_ID"], stub=stub, env=env, watch=watch,
                 bridge=bridge, log_dir=log_dir)


# ------------------------------------------------------------------ main scenario


def main():
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url or not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("e2e: DATABASE_URL and AWS_ENDPOINT_URL must be set (run scripts/e2e.sh)")
    os.environ.setdefault("AWS_REGION", REGION)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")

    check("bridge: SQS event shape and partial batch deletes", bridge_contract)

    stack = start_stack(admin_url, with_router=True)
    db_url, queue_url, api_token, base = stack.db_url, stack.queue_url, stack.api_token, stack.origin
    runtime_url = stack.runtime_url

    auth = {"Authorization": f"Bearer {api_token}"}
    state = {}

    def config():
        status, _, body = http(
            "POST", f"{base}/api/plex/config",
            # The stub Plex server speaks plain http (tools/stubs.py): the user's LAN opt-in.
            json.dumps({"plexToken": PLEX_TOKEN, "autoMarkWatched": True,
                        "autoAddShows": False, "allowInsecureHttp": True}).encode(),
            {**auth, "Content-Type": "application/json"}, timeout=FIRST_REQUEST_TIMEOUT)
        assert status == 200, f"{status} {body}"
        url = body.get("webhookUrl", "")
        assert url.startswith(f"{base}/api/plex/webhook?secret="), body
        assert "pLxT0k3n" not in json.dumps(body), "the Plex token is echoed"
        state["webhook_url"] = url
        return f"server {body.get('serverName')!r}"

    def token_encrypted():
        stored = psql(db_url, "SELECT plex_token FROM plex_config")
        assert stored and PLEX_TOKEN not in stored, "the Plex token is stored in plaintext"
        assert decrypt_token(stored, stack.encryption_key) == PLEX_TOKEN, \
            "the stored token does not decrypt to the saved one with the key in Secrets Manager"
        return f"{stored.split('.', 2)[0]}.{stored.split('.', 2)[1]}.<{len(stored)} chars>"

    def unauthorized():
        status, _, body = http("GET", f"{base}/api/plex/config",
                               headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert status == 401 and body.get("status") == "error", f"{status} {body}"

    def scrobble():
        payload = scrobble_payload()
        state["viewed_at"] = payload["Metadata"]["lastViewedAt"]
        body, ctype = multipart(payload)
        status, _, resp = http("POST", state["webhook_url"], body, {"Content-Type": ctype},
                               timeout=FIRST_REQUEST_TIMEOUT)
        assert status == 202, f"{status} {resp}"

    def wrong_secret():
        body, ctype = multipart(scrobble_payload())
        url = state["webhook_url"].split("?")[0] + "?secret=not-the-secret-0123456789"
        status, _, resp = http("POST", url, body, {"Content-Type": ctype})
        assert (status, resp) == (401, {"status": "error", "message": "missing or invalid credentials",
                                        "error": "unauthorized"}), f"{status} {resp}"

    def marked():
        deadline = time.monotonic() + PROCESSING_TIMEOUT
        seen = ""
        while time.monotonic() < deadline:
            seen = episode_state(db_url, 1, 1)
            if seen.startswith("true"):
                other = episode_state(db_url, 1, 2)
                assert other.startswith("false"), f"S01E02 changed too: {other}"
                expected = tracker_date(state["viewed_at"])
                assert seen == f"true {expected}", f"dateWatched is not the payload's lastViewedAt {expected}: {seen}"
                watched = psql(db_url, "SELECT watched_episodes FROM tvshows WHERE tmdb_id = 2316")
                assert watched == "1", f"watched_episodes {watched}"
                return f"S01E01 watched at {seen.split()[1]}, watched_episodes 1"
            time.sleep(1)
        raise AssertionError(f"S01E01 not marked within {PROCESSING_TIMEOUT:.0f} s (state {seen!r}); "
                             f"see {LOG_DIR}/watch.log and bridge.log")

    def logs():
        # Postgres first: every row the scrobble left (the wrong-secret post must have left none).
        office = psql(db_url, "SELECT id FROM tvshows WHERE tmdb_id = 2316")
        stored = psql(db_url, "SELECT status, event_type, action_taken, tvshow_id FROM plex_webhook_logs "
                              "WHERE plex_season = 1 AND plex_episode = 1")
        assert stored == f"success|media.scrobble|marked_watched|{office}", \
            f"want exactly one success row, marked_watched, tvshow {office}: {stored!r}"
        status, _, body = http("GET", f"{base}/api/plex/logs?status=success",
                               headers=auth, timeout=FIRST_REQUEST_TIMEOUT)
        assert status == 200, f"{status} {body}"
        rows = [r for r in body.get("logs", [])
                if (r.get("plexSeason"), r.get("plexEpisode")) == (1, 1)]
        assert len(rows) == 1, f"want one success row for S01E01 in {body}"
        row = rows[0]
        assert (row["status"], row["eventType"], row.get("actionTaken"), row.get("tvshowId")) == \
            ("success", "media.scrobble", "marked_watched", int(office)), row
        return f"{row.get('actionTaken')}, tvshow {office}, {row.get('processingDurationMs')} ms"

    def migrate_custom_resource():
        """The migrate binary in Lambda mode answers a CloudFormation request on its ResponseURL."""
        received = []

        class ResponseUrl(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):  # noqa: N802
                received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        cfn = ThreadingHTTPServer(("127.0.0.1", 0), ResponseUrl)
        threading.Thread(target=cfn.serve_forever, daemon=True).start()
        cleanups.append(cfn.shutdown)
        event = {
            "RequestType": "Update",
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:plexsync-MigrateFunction-e2e",
            "ResponseURL": f"http://127.0.0.1:{cfn.server_address[1]}/cfn-response?X-Amz-Signature=e2e",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/plexsync-e2e/0a1b2c3d",
            "RequestId": "e2e-request-1", "LogicalResourceId": "Migrations",
            "PhysicalResourceId": "Migrations-migrations", "ResourceType": "Custom::Migrations",
            "ResourceProperties": {"CodeVersion": "2"}, "OldResourceProperties": {"CodeVersion": "1"},
        }
        status, _, body = http("POST", f"{stack.base}/2015-03-31/functions/migrate/invocations",
                               json.dumps(event).encode(), {"Content-Type": "application/json"},
                               timeout=FIRST_REQUEST_TIMEOUT)
        assert status == 200, f"{status} {body}"
        assert len(received) == 1, f"{len(received)} responses sent"
        headers, raw = received[0]
        sent = json.loads(raw)
        assert sent["Status"] == "SUCCESS", sent
        assert sent["RequestId"] == "e2e-request-1" and sent["PhysicalResourceId"] == "Migrations-migrations", sent
        assert "content-type" not in {k.lower() for k in headers}, headers
        return sent["Reason"]

    def enable_sender(sender):
        def run():
            status, _, body = http(
                "PUT", f"{base}/api/senders/{sender}",
                json.dumps({"account": "alice"}).encode(),
                {**auth, "Content-Type": "application/json"}, timeout=FIRST_REQUEST_TIMEOUT)
            assert status == 200, f"{status} {body}"
            url = body.get("webhookUrl") or ""
            assert url.startswith(f"{base}/api/{sender}/webhook?secret="), body
            assert url.split("?")[1] == state["webhook_url"].split("?")[1], "one secret for all senders"
            state[f"{sender}_url"] = url
        return run

    def senders_listed():
        status, _, body = http("GET", f"{base}/api/senders", headers=auth)
        assert status == 200, f"{status} {body}"
        urls = {s["sender"]: s["webhookUrl"] for s in body["senders"]}
        assert urls == {"plex": state["webhook_url"], "jellyfin": state["jellyfin_url"],
                        "emby": state["emby_url"]}, urls
        return ", ".join(sorted(urls))

    def jellyfin_scrobble():
        """S01E04, which nothing else here touches (S01E02 is the unmatched-show scenario's),
        with only its TMDB id: the show is found by a title search confirmed by that id."""
        payload = world.sender_webhook("jellyfin", "playback_stop")
        episode = world.response("tmdb", "/3/tv/2316/season/1")["episodes"][3]
        payload.update({"EpisodeNumber": 4, "Name": episode["name"], "Provider_tmdb": str(episode["id"]),
                        "ItemId": "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a098"})
        for key in ("Provider_tvdb", "Provider_imdb"):
            payload.pop(key)
        payload["UtcTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
        status, _, resp = http("POST", state["jellyfin_url"], json.dumps(payload).encode(),
                               {"Content-Type": "application/json"})
        assert status == 202, f"{status} {resp}"

    def emby_scrobble():
        payload = world.sender_webhook("emby", "playback_stop")
        payload["Date"] = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime())
        body, ctype = emby_multipart(payload)
        status, _, resp = http("POST", state["emby_url"], body, {"Content-Type": ctype})
        assert status == 202, f"{status} {resp}"

    def senders_marked():
        deadline = time.monotonic() + PROCESSING_TIMEOUT
        seen = {}
        while time.monotonic() < deadline:
            seen = {n: episode_state(db_url, 1, n) for n in (3, 4)}
            if all(v.startswith("true") for v in seen.values()):
                other = episode_state(db_url, 1, 5)
                assert other.startswith("false"), f"S01E05 changed too: {other}"
                senders = psql(db_url, "SELECT string_agg(DISTINCT sender, ',' ORDER BY sender) "
                                       "FROM plex_show_mappings")
                assert senders == "emby,jellyfin,plex", f"one mapping per sender: {senders}"
                return "S01E04 (Jellyfin) and S01E03 (Emby) watched; mappings per sender"
            time.sleep(1)
        raise AssertionError(f"not marked within {PROCESSING_TIMEOUT:.0f} s (state {seen!r}); "
                             f"see {LOG_DIR}/watch.log and bridge.log")

    def queue_drained():
        """The bridge deletes a record after the processor answers, which can be just after the
        mark is visible in Postgres: wait for the delete. A record never deleted cannot pass:
        it stays in flight, then becomes visible again after the visibility timeout (when the
        processor would get it a second time), so the wait ends before that and fails."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        deadline = time.monotonic() + stack.visibility - 5
        while True:
            attrs = aws("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
            if attrs == {name: "0" for name in names}:
                break
            assert attrs["ApproximateNumberOfMessages"] == "0", f"redelivered, not deleted: {attrs}"
            assert time.monotonic() < deadline, f"not deleted within the visibility timeout: {attrs}"
            time.sleep(0.5)
        runs = psql(db_url, "SELECT count(*) FROM plex_webhook_logs WHERE plex_season = 1 AND plex_episode = 1")
        assert runs == "1", f"processed {runs} times"

    def unmatched_scrobble():
        payload = world.webhook("unmatched_episode_scrobble")
        payload["Metadata"]["lastViewedAt"] = int(time.time())
        body, ctype = multipart(payload)
        status, _, resp = http("POST", state["webhook_url"], body, {"Content-Type": ctype})
        assert status == 202, f"{status} {resp}"

    def unmatched_conflict():
        deadline = time.monotonic() + PROCESSING_TIMEOUT
        listed = None
        while time.monotonic() < deadline:
            status, _, listed = http("GET", f"{base}/api/plex/conflicts",
                                     headers=auth, timeout=FIRST_REQUEST_TIMEOUT)
            assert status == 200, f"{status} {listed}"
            found = [c for c in listed.get("conflicts", []) if c.get("plexRatingKey") == "61000"]
            if found:
                conflict = found[0]
                offered = [m.get("tvshowId") for m in conflict.get("potentialMatches", [])]
                office = int(psql(db_url, "SELECT id FROM tvshows WHERE tmdb_id = 2316"))
                assert office in offered, f"the tracker's The Office is not offered: {conflict}"
                assert conflict.get("pendingEvents") == 1, conflict
                assert episode_state(db_url, 1, 2).startswith("false"), "marked before resolving"
                state["conflict"], state["office"] = conflict["id"], office
                return f"conflict {conflict['id']} ({conflict['conflictType']}), candidates {offered}"
            time.sleep(1)
        raise AssertionError(f"no conflict for the unmatched show within {PROCESSING_TIMEOUT:.0f} s: "
                             f"{listed}; see {LOG_DIR}/watch.log and bridge.log")

    def resolve_unmatched():
        status, _, body = http(
            "POST", f"{base}/api/plex/conflicts/{state['conflict']}/resolve",
            json.dumps({"action": "select", "tvshowId": state["office"]}).encode(),
            {**auth, "Content-Type": "application/json"}, timeout=FIRST_REQUEST_TIMEOUT)
        assert status == 200, f"{status} {body}"
        assert body["replay"]["markedEpisodes"] == ["S01E02"], body
        seen = episode_state(db_url, 1, 2)
        assert seen.startswith("true"), f"S01E02 is {seen!r} after resolving"
        return f"S01E02 watched at {seen.split()[1]}"

    def runtime_role_connections():
        """The processor and the management functions connected as the runtime role (DML only)."""
        role = urlparse(runtime_url).username
        database = db_url.rsplit("/", 1)[1]
        by_role = psql(db_url, f"""
            SELECT usename, count(*) FROM pg_stat_activity
            WHERE datname = '{database}' AND application_name = 'plexsync'
            GROUP BY usename ORDER BY usename""")
        users = dict(line.split("|") for line in by_role.splitlines())
        assert users.get(role), f"no plexsync connection as {role}: {users}"
        return f"{users[role]} connection(s) as {role}"

    check("migrate as a CloudFormation custom resource answers its ResponseURL", migrate_custom_resource)
    if check("POST /api/plex/config -> 200 with webhookUrl", config):
        check("plex_config holds the Plex token encrypted with the key in Secrets Manager", token_encrypted)
        check("management API rejects a wrong token with 401", unauthorized)
        if check("multipart scrobble (The Office S01E01 + thumb) -> 202", scrobble):
            check("webhook with a wrong secret -> 401 unauthorized", wrong_secret)
            if check("bridge -> processor marks S01E01 watched at lastViewedAt in Postgres", marked):
                check("one success log row (marked_watched, the show) in Postgres and GET /api/plex/logs", logs)
                check("the message was deleted from the queue, processed once", queue_drained)
                check("the functions connect as the runtime role", runtime_role_connections)
        if check("unmatched show (local://, no Guid array) scrobble -> 202", unmatched_scrobble):
            if check("the processor opens a conflict offering the tracker's show", unmatched_conflict):
                check("resolving it through the API marks the held episode", resolve_unmatched)
        if (check("PUT /api/senders/jellyfin -> 200 with its webhookUrl", enable_sender("jellyfin"))
                and check("PUT /api/senders/emby -> 200 with its webhookUrl", enable_sender("emby"))):
            check("GET /api/senders shows every sender's webhook URL", senders_listed)
            if (check("Jellyfin PlaybackStop (JSON, S01E04) -> 202", jellyfin_scrobble)
                    and check("Emby playback.stop (multipart data, S01E03) -> 202", emby_scrobble)):
                check("bridge -> processor marks the Jellyfin and Emby episodes watched", senders_marked)

    check("admin page scenarios ran in headless Chromium", lambda: browser_tests(admin_url, stack.stub))


SCREENSHOTS = LOG_DIR / "screenshots"


def browser_tests(admin_url, stub):
    """The admin page's scenarios (tests/browser/admin.test.mjs) in headless Chromium against a
    stack of their own (a new user's empty database), one result per scenario."""
    chromium = subprocess.run(["scripts/ensure-browser.sh"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    st = start_stack(admin_url, stub=stub, with_router=True, log_dir=LOG_DIR / "browser")
    env = {**os.environ, "BASE_URL": st.origin, "API_TOKEN": st.api_token,
           "DATABASE_URL": st.db_url, "SCREENSHOT_DIR": str(SCREENSHOTS), "CHROMIUM": chromium}
    log(f"browser tests (tests/browser/admin.test.mjs) against {st.origin}; screenshots in {SCREENSHOTS}")
    proc = subprocess.run(
        ["node", "--test", "--test-concurrency=1", "--test-reporter=tap", "admin.test.mjs"],
        cwd=ROOT / "tests" / "browser", env=env, capture_output=True, text=True, timeout=1800)
    (LOG_DIR / "browser.tap").write_text(proc.stdout + proc.stderr)
    found = 0
    for line in proc.stdout.splitlines():
        # Top-level results only ("ok 1 - name" / "not ok 2 - name"), not the subtest lines.
        ok, _, rest = line.partition(" - ")
        if not rest or ok.startswith(" ") or not (ok.startswith("ok ") or ok.startswith("not ok ")):
            continue
        found += 1
        passed = ok.startswith("ok ")
        results.append((f"browser: {rest}", passed, ""))
        print(f"{'PASS' if passed else 'FAIL'} browser: {rest}", flush=True)
    if proc.returncode != 0 or found == 0:
        print(proc.stdout[-6000:], proc.stderr[-3000:], sep="\n", flush=True)
    if found == 0:
        raise AssertionError(f"no browser test ran (exit {proc.returncode}); see {LOG_DIR}/browser.tap")


def run():
    code = 0
    try:
        main()
    except Exception as e:  # noqa: BLE001
        results.append(("setup", False, str(e)))
        print(f"FAIL setup: {e}", flush=True)
        traceback.print_exc()
    finally:
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                log(f"cleanup: {e}")
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(results) - passed
    if failed:
        code = 1
        log(f"logs of the failed run: {LOG_DIR}")
    print(f"E2E: {passed} passed, {failed} failed", flush=True)
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(run())
