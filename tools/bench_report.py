#!/usr/bin/env python3
"""Writes BENCHMARKS.md from what `make bench` measured: target/bench/lambda.json
(tools/lambda_bench.py), target/bench/allocations.json (the webhook's allocation bench) and
criterion's estimates under target/criterion/. Every figure stands next to its target and its
baseline; a missed target gets its gap.

    python3 tools/bench_report.py [--out BENCHMARKS.md]
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "target" / "bench"
FUNCTIONS = ["webhook", "processor", "config", "logs", "mappings", "conflicts", "admin", "migrate"]

# Measured on this project before one compiled-in trust-root set (issue 13; release build,
# stub Runtime API, 15 cold starts): the baseline the figures below improve on.
BEFORE = {
    "hello_next_ms": 3.7,
    "next_ms": {"webhook": 14.6, "processor": 24.2},
    "next_ratio": {"webhook": 3.9, "processor": 6.5},
    "first_response_ms": {"webhook": 41, "processor": 33},
    "rss_mb": {"hello-lambda": 3.6, "webhook": 10.8, "processor": 11.1},
    "cert_opens": {"webhook": 147, "processor": 441},
    "pgbench_tps": {1: 452, 4: 1288, 16: 759},
}

# The processor before its mark was done in place (jsonb_set) with one connection checkout per
# message: the previous `make bench` (2026-12-05 19:52 UTC, processor at commit 4c0de6f, same
# machine), two runs of the throughput step, each against its own pgbench.
BEFORE_IN_PLACE = {
    "throughput": [
        {1: (39, 48), 4: (63, 67), 16: (82, 103)},
        {1: (33, 45), 4: (103, 122), 16: (71, 146)},
    ],
    "per_message": {1: (14.0, 16.0, 1.0), 10: (12.2, 14.3, 1.1)},
    "criterion_mark_ms": 1.7,
}

# The criterion medians of the last run that had them (2026-11-28, same machine), shown when a
# run skips criterion (BENCH_CRITERION=0).
EARLIER_CRITERION = {
    "ingest/multipart_extract_40KiB_thumb": "5.2 µs", "ingest/parse_decide_enqueue_body": "20 µs",
    "ingest/rate_limiter_check_1k_ips": "77 ns", "queue_message_from_body": "8.9 µs",
    "token_encrypt": "0.69 µs", "token_decrypt": "0.31 µs", "mark_episode_201_episode_show": "1.7 ms (before the mark in place)",
}

CRITERION = [
    ("ingest/multipart_extract_40KiB_thumb", "webhook: pull the `payload` part out of a Plex multipart body with a 40 KiB JPEG thumb"),
    ("ingest/parse_decide_enqueue_body", "webhook: parse the Plex JSON, validate/filter, build the queue message, its body, group id and dedup id"),
    ("ingest/rate_limiter_check_1k_ips", "webhook: one per-IP rate-limit check (1,024 distinct addresses)"),
    ("queue_message_from_body", "processor: parse one queue message"),
    ("token_encrypt", "AES-256-GCM encryption of a Plex token"),
    ("token_decrypt", "AES-256-GCM decryption of a Plex token"),
    ("mark_episode_201_episode_show", "one transaction against local Postgres on a show of 201 episodes: lock the show row, find the episode, count and claim the idempotency key (one statement), set the episode's two fields in place (`jsonb_set`), commit (before this change: 1.7 ms, the seasons JSONB read and written whole)"),
]


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine():
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    os_name = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} RAM, {os_name}, Linux {platform.release()}; "
            f"{sh('rustc', '-V')}; {sh('psql', '-V')}; load average at the end {load}")


def criterion_median_ns(name):
    path = ROOT / "target" / "criterion" / name / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt_time(ns):
    if ns is None:
        return "not run"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def ms(ns):
    return f"{ns / 1e6:.1f} ms"


def verdict(ok):
    return "met" if ok else "**missed**"


def load(name):
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


def cold_start_section(lam):
    cs = lam.get("cold_start_ns")
    if not cs:
        return ["Cold starts were not measured in this run.", ""]
    hello = cs["hello-lambda"]
    sys = lam.get("startup_syscalls") or {}
    lines = [
        f"Each binary exec'd {lam['rounds']} times under the stub Runtime API; medians. Target: "
        "exec → first `GET /next` ≤ 2× hello-world, no file of the certificate store opened and no "
        "connection other than the Runtime API before the first invocation.",
        "",
        "| function | exec → first `/next` | × hello | target ≤ 2× | before (issue 13) | exec → first response | cert-store opens before `/next` (before) | other connections before `/next` |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missed = []
    for name in ["hello-lambda"] + FUNCTIONS:
        c = cs[name]
        ratio = c["next"] / hello["next"]
        s = sys.get(name) or {}
        before = ""
        if name in BEFORE["next_ms"]:
            before = f"{BEFORE['next_ms'][name]} ms ({BEFORE['next_ratio'][name]}×)"
        elif name == "hello-lambda":
            before = f"{BEFORE['hello_next_ms']} ms"
        opens = s.get("cert_opens", "not traced")
        if name in BEFORE["cert_opens"]:
            opens = f"{opens} ({BEFORE['cert_opens'][name]})"
        other = ", ".join(s.get("other_connects", [])) or ("none" if s else "not traced")
        ok = ratio <= 2.0 and (not s or (s["cert_opens"] == 0 and not s["other_connects"]))
        if name != "hello-lambda" and not ok:
            missed.append(name)
        target = "baseline" if name == "hello-lambda" else verdict(ok)
        lines.append(f"| {name} | {ms(c['next'])} | {ratio:.2f}× | {target} | {before} | "
                     f"{ms(c['first_response'])} | {opens} | {other} |")
    lines += [
        "",
        "First response: hello-world answers `{}`; webhook a Plex `media.scrobble` (multipart, 40 KiB "
        "thumb) with the two AWS calls it must make (Secrets Manager `GetSecretValue`, SQS "
        "`SendMessage`, both to moto); processor one SQS record of an already mapped show (full "
        "path, first Postgres connection included); config/logs/mappings/conflicts an authorised "
        "`GET` of their list route (Secrets Manager for the API token, then Postgres); migrate a "
        "CloudFormation `Update` (migrations up to date) and its response `PUT`.",
        "",
    ]
    warm = (lam.get("warm") or {}).get("webhook")
    if "webhook" in cs and warm:
        w = cs["webhook"]["first_response"]
        # One warm invocation is one SendMessage plus the CPU work: the price of an AWS call here.
        budget = 2 * hello["first_response"] + 2 * warm["median_ns"]
        ok = w <= budget
        if not ok:
            missed.append("webhook first response")
        lines.append(
            f"Webhook first response: {ms(w)} (before: {BEFORE['first_response_ms']['webhook']} ms). Target: "
            f"≤ 2× hello-world's first response plus the two AWS calls it must make, taking one warm "
            f"invocation ({fmt_time(warm['median_ns'])}, one `SendMessage` to moto) as the price of a call: "
            f"2 × {ms(hello['first_response'])} + 2 × {fmt_time(warm['median_ns'])} = {ms(budget)}: {verdict(ok)}.")
        lines.append("")
    if missed:
        lines.append(f"Missed: {', '.join(missed)} (see *Gaps* below).")
        lines.append("")
    return lines


def warm_section(lam):
    warm = lam.get("warm")
    if not warm:
        return ["Warm invocations were not measured in this run.", ""]
    hello = warm["hello-lambda"]
    lines = [
        f"{lam.get('invocations', 1000):,} invocations per process after its cold start (the webhook's each from its own source "
        f"address, so the per-IP limiter never answers 429); per-invocation time is event handed "
        f"out → response received, median and p99. Peak RSS is the process's `VmHWM` after the "
        f"last one. Target: peak RSS < 32 MB.",
        "",
        "| function | per invocation, median | p99 | × hello | peak RSS | target < 32 MB | before |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, w in warm.items():
        rss_mb = w["peak_rss_kib"] / 1024
        before = f"{BEFORE['rss_mb'][name]} MB" if name in BEFORE["rss_mb"] else ""
        target = "baseline" if name == "hello-lambda" else verdict(rss_mb < 32)
        lines.append(f"| {name} | {fmt_time(w['median_ns'])} | {fmt_time(w['p99_ns'])} | "
                     f"{w['median_ns'] / hello['median_ns']:.1f}× | {rss_mb:.1f} MiB | {target} | {before} |")
    lines += [
        "",
        "Events: webhook a distinct-episode scrobble (Secrets Manager cached after the first; one SQS "
        "`SendMessage` to moto each); processor one SQS record each (a distinct episode of an already "
        "mapped show); the management functions an authorised `GET` of their list route. Against "
        "moto and a local Postgres these are local round trips, so the webhook's figure is mostly "
        "moto's Python answering `SendMessage`; on AWS it is SQS latency.",
        "",
    ]
    return lines


def throughput_section(lam):
    tp = lam.get("throughput")
    if not tp:
        return ["Throughput was not measured in this run.", ""]
    lines = [
        "Scrobbles of already mapped shows, each a distinct episode, each the full path (config, "
        "idempotency pre-check and mapping, pipelined in one round trip; transaction: show row lock with the episode's place, the "
        "counts and the idempotency key claimed in one statement, the episode marked in place in "
        "the `seasons` JSONB, log row, commit), in SQS batches of 10. N processor processes (the "
        "release binary under the stub Runtime API) run at once, each with its own shows as FIFO "
        "message groups would give them. pgbench: `tpcb-like`, scale 1, same client count, "
        "same Postgres, same run. Both connect with `sslmode=prefer`, so both use TLS when the "
        "server offers it. Target ≥ 0.7× pgbench.",
        "",
        "| concurrent processors | messages | messages/s | pgbench tpcb-like tps | ratio | target ≥ 0.7× | pgbench before (issue 13) |",
        "|---|---|---|---|---|---|---|",
    ]
    for clients, t in sorted(tp.items(), key=lambda kv: int(kv[0])):
        ratio = t["per_second"] / t["pgbench_tps"]
        before = BEFORE["pgbench_tps"].get(int(clients), "")
        lines.append(f"| {clients} | {t['messages']} | {t['per_second']:.0f} | {t['pgbench_tps']:.0f} | "
                     f"{ratio:.2f}× | {verdict(ratio >= 0.7)} | {before} |")
    lines.append("")
    base = lam.get("throughput_baseline")
    if base:
        lines += [
            f"The processor as it was at {lam.get('baseline_label', 'the baseline')} (release build, "
            "same profile), measured in the same run, interleaved with the current one at each "
            "client count (current, baseline, then pgbench):",
            "",
            "| concurrent processors | baseline messages/s | current messages/s | current ÷ baseline | baseline ÷ pgbench | current ÷ pgbench |",
            "|---|---|---|---|---|---|",
        ]
        for clients, b in sorted(base.items(), key=lambda kv: int(kv[0])):
            t = tp[clients]
            lines.append(f"| {clients} | {b['per_second']:.0f} | {t['per_second']:.0f} | "
                         f"{t['per_second'] / b['per_second']:.2f}× | {b['per_second'] / b['pgbench_tps']:.2f}× | "
                         f"{t['per_second'] / t['pgbench_tps']:.2f}× |")
        lines.append("")
    for n, rerun in enumerate(lam.get("throughput_repeats") or [], start=2):
        cells = ", ".join(
            f"{c}: {t['per_second']:.0f} msg/s vs {t['pgbench_tps']:.0f} tps = "
            f"{t['per_second'] / t['pgbench_tps']:.2f}× ({verdict(t['per_second'] / t['pgbench_tps'] >= 0.7)})"
            for c, t in sorted(rerun.items(), key=lambda kv: int(kv[0])))
        lines += [f"Repeat {n} of the same measurement (same binaries, minutes later): {cells}.", ""]
    lines += [
        "Before the mark in place (the previous `make bench`, 2026-12-05 19:52 UTC, same machine; "
        "two runs, each against its own pgbench):",
        "",
        "| concurrent processors | messages/s | pgbench tps | ratio | target ≥ 0.7× |",
        "|---|---|---|---|---|",
    ]
    for run in BEFORE_IN_PLACE["throughput"]:
        for clients, (rate, tps) in sorted(run.items()):
            lines.append(f"| {clients} | {rate} | {tps} | {rate / tps:.2f}× | {verdict(rate / tps >= 0.7)} |")
    lines.append("")
    earlier = lam.get("throughput_before_statement_cache")
    if earlier:
        lines += [
            "The same measurement with the processor as it was before its statements were prepared "
            "once per connection (an earlier run of this bench on the same day, its own pgbench):",
            "",
            "| concurrent processors | messages/s | pgbench tps | ratio |",
            "|---|---|---|---|",
        ]
        for clients, t in sorted(earlier.items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {clients} | {t['per_second']:.0f} | {t['pgbench_tps']:.0f} | "
                         f"{t['per_second'] / t['pgbench_tps']:.2f}× |")
        lines.append("")
    pm = lam.get("per_message")
    if pm:
        lines += [
            "Statements and round trips per message, counted by a proxy that parses the client's side "
            "of the Postgres wire protocol (a statement is each `Execute` or simple `Query`, "
            "`BEGIN`/`COMMIT` included; a round trip is each read of the client's side that ends a "
            "`Sync` or simple `Query`, so statements pipelined back to back count once; the previous "
            "runs counted each `Sync`, which is the same for a client that never pipelines):",
            "",
            "| batch size | statements / message | round trips / message | statements parsed (Parse) / message |",
            "|---|---|---|---|",
        ]
        for size, c in sorted(pm.items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {size} | {c['statements']:.1f} | {c['round_trips']:.1f} | {c['parses']:.1f} |")
        for size, c in sorted((lam.get("per_message_baseline") or {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {size}, {lam.get('baseline_label', 'baseline')} (same run) | {c['statements']:.1f} | "
                         f"{c['round_trips']:.1f} | {c['parses']:.1f} |")
        for size, (st, rt, parses) in sorted(BEFORE_IN_PLACE["per_message"].items()):
            lines.append(f"| {size}, before the mark in place (previous run) | {st:.1f} | {rt:.1f} | {parses:.1f} |")
        for size, c in sorted((lam.get("per_message_before_statement_cache") or {}).items(), key=lambda kv: int(kv[0])):
            lines.append(f"| {size}, before statements were prepared once per connection | {c['statements']:.1f} | "
                         f"{c['round_trips']:.1f} | {c['parses']:.1f} |")
        lines.append("")
    return lines


def sizes_section(lam):
    sizes = lam.get("binary_bytes")
    if not sizes:
        return []
    lines = ["| binary | stripped size |", "|---|---|"]
    for name, b in sizes.items():
        lines.append(f"| {name} | {b / 1024 / 1024:.1f} MiB |")
    return lines + [""]


IMPORT_DEMO_HEADING = "## History import at scale"
IMPORT_DEMO_END = "<!-- import-demo:end -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--gaps", default=str(ROOT / "docs" / "benchmark-gaps.md"),
                    help="hand-written analysis appended verbatim when present")
    args = ap.parse_args()
    lam = load("lambda.json") or {}
    alloc = load("allocations.json")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    out = [
        "# Benchmarks",
        "",
        "Performance is measured here, never in timed tests. This file is written by `make bench` "
        "(`scripts/bench.sh`): it builds the release binaries once (`cargo lambda build --release`, "
        "the artifacts that are deployed, plus `tools/hello-lambda` with the same profile as the "
        "baseline), runs the criterion benches, then `tools/lambda_bench.py` (the binaries under a "
        "stub Lambda Runtime API, against local Postgres and moto) and `tools/bench_report.py`.",
        "",
        f"- **Run:** {now}, `make bench`",
        f"- **Machine:** {machine()}",
        "- Timings on a shared machine are noisy: each is reported against a baseline measured in "
        "the same run (hello-world `lambda_runtime`, pgbench), with medians.",
        "",
        "## Cold start",
        "",
        *cold_start_section(lam),
        "## Processor throughput against local Postgres",
        "",
        *throughput_section(lam),
        "## Warm invocations and memory",
        "",
        *warm_section(lam),
        "## Binary sizes",
        "",
        "Release profile (LTO, one codegen unit, `strip = true`), x86_64 via cargo-lambda/zig:",
        "",
        *sizes_section(lam),
        "## Webhook allocations per request",
        "",
    ]
    if alloc:
        out += [
            "A counting global allocator (`functions/webhook/benches/allocations.rs`):",
            "",
            "| path | allocations / request | bytes allocated / request |",
            "|---|---|---|",
            f"| CPU path (multipart, parse, decide, queue message and ids, rate limit) | {alloc['cpu_path']['allocations']:.0f} | {alloc['cpu_path']['bytes'] / 1024:.1f} KiB |",
            f"| whole handler, warm, SQS `SendMessage` to moto included | {alloc['handler_warm']['allocations']:.0f} | {alloc['handler_warm']['bytes'] / 1024:.1f} KiB |",
            "",
        ]
    else:
        out += ["Not measured in this run.", ""]
    out += [
        "## CPU hot paths (criterion)",
        "",
        "Sources: `functions/webhook/benches/hot_paths.rs`, `shared/benches/hot_paths.rs`, "
        "`shared/benches/marking_db.rs`. Median of criterion's estimate.",
        "",
        "| benchmark | what one iteration is | median |",
        "|---|---|---|",
    ]
    for name, what in CRITERION:
        ns = criterion_median_ns(name)
        shown = fmt_time(ns) if ns is not None else f"{EARLIER_CRITERION[name]} (not re-run; 2026-11-28)"
        out.append(f"| `{name}` | {what} | {shown} |")
    out.append("")
    gaps = Path(args.gaps)
    if gaps.exists():
        out += [gaps.read_text().rstrip(), ""]
    # `make import-demo` owns its section: kept as it is.
    previous = Path(args.out).read_text() if Path(args.out).exists() else ""
    start, stop = previous.find(IMPORT_DEMO_HEADING), previous.find(IMPORT_DEMO_END)
    if 0 <= start < stop:
        out += [previous[start:stop + len(IMPORT_DEMO_END)], ""]
    Path(args.out).write_text("\n".join(out))
    print(f"bench_report: wrote {args.out}")


if __name__ == "__main__":
    main()
