#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/fuzz_targets), from the payloads of
fixtures/world.json (tools/world.py):

    python3 tools/fuzz_seeds.py DIR   -> DIR/webhook_body/*, DIR/guid/*

webhook_body inputs are one byte choosing the sender (0 Plex, 1 Jellyfin, 2 Emby, the order of
Sender::ALL), the Content-Type, a newline, then the body: each payload as JSON and as the
multipart body its server posts (Plex with its JPEG thumb). guid inputs are the guids and Guid
array ids the Plex payloads carry, one per line.
"""

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e  # noqa: E402
import world  # noqa: E402

SENDERS = {"plex_webhooks": (0, "payload"), "jellyfin_webhooks": (1, "payload"), "emby_webhooks": (2, "data")}


def multipart(payload, field, thumb):
    body, ctype = e2e.multipart(payload, thumb=thumb) if field == "payload" else e2e.multipart(payload)
    if field != "payload":
        body = body.replace(b'name="payload"', f'name="{field}"'.encode())
    return body, ctype


def webhook_inputs():
    for group, (pick, field) in SENDERS.items():
        for payload in world.WORLD[group].values():
            text = json.dumps(payload).encode()
            yield bytes([pick]) + b"application/json\n" + text
            body, ctype = multipart(payload, field, e2e.THUMB if pick == 0 else b"")
            yield bytes([pick]) + ctype.encode() + b"\n" + body


def guid_inputs():
    for payload in world.WORLD["plex_webhooks"].values():
        meta = payload.get("Metadata", {})
        lines = [meta.get(k) for k in ("guid", "parentGuid", "grandparentGuid")]
        lines += [g["id"] for g in meta.get("Guid", [])]
        yield "\n".join(line for line in lines if line).encode()


def write(directory, inputs):
    directory.mkdir(parents=True, exist_ok=True)
    for data in inputs:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    write(out / "webhook_body", webhook_inputs())
    write(out / "guid", guid_inputs())
    print(f"fuzz seeds in {out}: {len(list((out / 'webhook_body').iterdir()))} webhook bodies, "
          f"{len(list((out / 'guid').iterdir()))} guid sets", file=sys.stderr)
