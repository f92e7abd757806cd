#!/usr/bin/env python3
"""Create the local AWS resources (moto) the functions expect, and write .dev/env.

Idempotent: existing queues are reused (their redrive policy re-applied) and existing
secret values are kept. moto forgets everything when it stops, so the secret values are
also saved in .dev/secrets.json and restored from there: the webhook URL given to Plex,
the API token and the key that encrypts the Plex token in Postgres survive a restart of
`make dev` (until `make clean-dev`). Run with the venv python (boto3):

    .venv/bin/python tools/bootstrap_aws.py [--print]

--print writes API_TOKEN=... and WEBHOOK_SECRET=... lines to stdout.
"""

import json
import os
import secrets
import shlex
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parent.parent
DEV_DIR = Path(os.environ.get("DEV_DIR") or ROOT / ".dev")
ENV_FILE = DEV_DIR / "env"
SAVED_SECRETS = DEV_DIR / "secrets.json"

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5050")
REGION = "us-east-1"
# Prefix of the queue and secret names; a second stack (the make dev shutdown test) uses its own.
NAME = os.environ.get("DEV_NAME") or "plexsync"
QUEUE = f"{NAME}-events.fifo"
DLQ = f"{NAME}-events-dlq.fifo"
MAX_RECEIVE_COUNT = 5

# Secret id -> generator for a fresh value (only used when the secret does not exist).
SECRETS = {
    f"{NAME}/encryption-key": lambda: secrets.token_hex(32),  # 32 bytes, AES-256-GCM
    f"{NAME}/api-token": lambda: secrets.token_urlsafe(32),  # 43 url-safe chars
    f"{NAME}/webhook-secret": lambda: secrets.token_urlsafe(24),  # 32 url-safe chars
}


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def ensure_queue(sqs, name, extra=None):
    """Return the queue URL, creating the FIFO queue if needed; (re)apply `extra` attributes."""
    attrs = {"FifoQueue": "true", "ContentBasedDeduplication": "false", **(extra or {})}
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as e:
        if e.response["Error"]["Code"] not in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
            raise
        return sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    # FifoQueue cannot be changed after creation; the rest can be re-applied.
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={k: v for k, v in attrs.items() if k != "FifoQueue"}
    )
    return url


def ensure_secret(sm, name, make_value, saved):
    """Return the secret's value: the one in moto, else the saved one, else a new one."""
    try:
        return sm.get_secret_value(SecretId=name)["SecretString"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    value = saved.get(name) or make_value()
    sm.create_secret(Name=name, SecretString=value)
    return value


def write_private(path, text):
    """Write a file only the owner can read (secrets, maybe a real TMDB token)."""
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def main():
    print_secrets = "--print" in sys.argv[1:]

    sqs = client("sqs")
    dlq_url = ensure_queue(sqs, DLQ)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    queue_url = ensure_queue(sqs, QUEUE, {"RedrivePolicy": json.dumps(redrive)})

    sm = client("secretsmanager")
    saved = json.loads(SAVED_SECRETS.read_text()) if SAVED_SECRETS.exists() else {}
    values = {name: ensure_secret(sm, name, make, saved) for name, make in SECRETS.items()}
    write_private(SAVED_SECRETS, json.dumps(values, indent=2) + "\n")

    env = {
        "DATABASE_URL": os.environ.get("DEV_DATABASE_URL")
        or "postgres://plexsync:plexsync@127.0.0.1:5432/plexsync",
        "QUEUE_URL": queue_url,
        "DLQ_URL": dlq_url,
        "MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
        "ENCRYPTION_KEY_SECRET_ID": f"{NAME}/encryption-key",
        "WEBHOOK_SECRET_ID": f"{NAME}/webhook-secret",
        "API_TOKEN_SECRET_ID": f"{NAME}/api-token",
        # make dev's router (tools/router.py): the API under the same paths as on API Gateway.
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8080",
        # External services: keep what the caller set (e.g. a stub server or a real token).
        "TMDB_BASE_URL": os.environ.get("TMDB_BASE_URL") or "https://api.themoviedb.org",
        "TMDB_API_TOKEN": os.environ.get("TMDB_API_TOKEN") or "dev-placeholder-tmdb-token",
        "PLEX_TV_BASE_URL": os.environ.get("PLEX_TV_BASE_URL") or "https://plex.tv",
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "RUST_LOG": "info",
    }
    write_private(
        ENV_FILE,
        "# Written by tools/bootstrap_aws.py; source it: . .dev/env\n"
        + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()),
    )

    print(f"bootstrap_aws: queue {queue_url} (DLQ {DLQ}), secrets ok, wrote {ENV_FILE}",
          file=sys.stderr)
    if print_secrets:
        print(f"API_TOKEN={values[f'{NAME}/api-token']}")
        print(f"WEBHOOK_SECRET={values[f'{NAME}/webhook-secret']}")


if __name__ == "__main__":
    main()
