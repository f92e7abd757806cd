#!/usr/bin/env python3
"""Local stand-in for the SQS event source mapping: long-polls the queue and invokes the
processor through `cargo lambda watch`'s invoke API with a real SQS event, then deletes only
the records the processor did not report in `batchItemFailures`.

As on AWS (ReportBatchItemFailures on a FIFO queue):
  - a batch holds up to 10 messages, in the queue's order (FIFO receive keeps a message
    group's messages in order and never hands out a group that has messages in flight);
  - a failed record stays on the queue and comes back after the visibility timeout, until
    maxReceiveCount moves it to the DLQ;
  - when the invocation itself fails (function error, crash, watch not answering) nothing is
    deleted and the whole batch comes back.

Run with the venv python (boto3):
    .venv/bin/python tools/bridge.py [--queue-url URL] [--invoke-url URL]
Environment: QUEUE_URL, AWS_ENDPOINT_URL, AWS_REGION (as in .dev/env), BRIDGE_INVOKE_URL.
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

import boto3

DEFAULT_INVOKE_URL = "http://127.0.0.1:9000/2015-03-31/functions/processor/invocations"


def log(message):
    print(f"bridge: {message}", flush=True)


def lambda_message_attributes(attributes):
    """SQS API message attributes -> the camelCase shape Lambda puts in an SQS event."""
    out = {}
    for name, value in (attributes or {}).items():
        entry = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        out[name] = entry
    return out


def sqs_event(messages, queue_arn, region):
    """The event Lambda's SQS event source mapping sends for a batch."""
    records = []
    for m in messages:
        attrs = m.get("Attributes", {})
        record_attrs = {
            k: attrs[k]
            for k in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
                "SequenceNumber",
                "MessageGroupId",
                "MessageDeduplicationId",
            )
            if k in attrs
        }
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": record_attrs,
                "messageAttributes": lambda_message_attributes(m.get("MessageAttributes")),
                "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


class InvokeError(Exception):
    pass


def invoke(url, event, timeout):
    """POSTs the event; returns the set of failed message ids. Raises InvokeError when the
    invocation failed as a whole."""
    request = urllib.request.Request(
        url,
        data=json.dumps(event).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        raise InvokeError(f"HTTP {e.code}: {e.read()[:500]!r}") from None
    except (urllib.error.URLError, OSError) as e:
        raise InvokeError(str(e)) from None
    try:
        result = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError:
        raise InvokeError(f"response is not JSON: {body[:200]!r}") from None
    if isinstance(result, dict) and ("errorType" in result or "errorMessage" in result):
        raise InvokeError(f"{result.get('errorType')}: {result.get('errorMessage')}")
    if not isinstance(result, dict):
        # An SQS handler that does not report failures returns null: all succeeded.
        return set()
    failures = result.get("batchItemFailures") or []
    return {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}


def delete(sqs, queue_url, messages):
    if not messages:
        return
    response = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ],
    )
    for failed in response.get("Failed", []):
        log(f"could not delete a message: {failed.get('Code')} {failed.get('Message')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", default=os.environ.get("QUEUE_URL"))
    parser.add_argument(
        "--invoke-url", default=os.environ.get("BRIDGE_INVOKE_URL", DEFAULT_INVOKE_URL)
    )
    parser.add_argument("--wait", type=int, default=20, help="long-poll seconds (max 20)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument(
        "--invoke-timeout",
        type=float,
        default=600,
        help="seconds; the first invocation under cargo lambda watch compiles the processor",
    )
    args = parser.parse_args()
    if not args.queue_url:
        parser.error("--queue-url or QUEUE_URL is required")

    # SIGTERM (make dev's cleanup) ends the loop like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    sqs = boto3.client("sqs", region_name=region)  # AWS_ENDPOINT_URL points it at moto
    queue_arn = sqs.get_queue_attributes(QueueUrl=args.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    log(f"polling {args.queue_url} -> {args.invoke_url}")

    while True:
        try:
            received = sqs.receive_message(
                QueueUrl=args.queue_url,
                MaxNumberOfMessages=args.batch_size,
                WaitTimeSeconds=args.wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except Exception as e:  # moto restarting, network hiccup: keep the bridge alive
            log(f"receive failed: {e}; retrying in 2 s")
            time.sleep(2)
            continue
        messages = received.get("Messages", [])
        if not messages:
            continue
        ids = [m["MessageId"] for m in messages]
        log(f"invoking processor with {len(messages)} record(s): {', '.join(ids)}")
        try:
            failed = invoke(args.invoke_url, sqs_event(messages, queue_arn, region), args.invoke_timeout)
        except InvokeError as e:
            # Nothing is deleted: the batch comes back after the visibility timeout.
            log(f"invocation failed, batch left on the queue: {e}")
            time.sleep(1)
            continue
        done = [m for m in messages if m["MessageId"] not in failed]
        delete(sqs, args.queue_url, done)
        if failed:
            log(f"{len(done)} done, {len(failed)} reported failed (left on the queue): {', '.join(sorted(failed))}")
        else:
            log(f"{len(done)} done")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
