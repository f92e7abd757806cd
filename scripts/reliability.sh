#!/usr/bin/env bash
# `make reliability`: the reliability suite (tools/reliability.py: duplicate storm, database
# outage, poison message, schemathesis, secret scan, on the end-to-end stack) and fuzzing of the
# webhook body and guid parsers, then RELIABILITY.md with the figures.
#   scripts/reliability.sh           full run (FUZZ_SECONDS per fuzz target, default 600)
#   scripts/reliability.sh --quick   storm, poison and outage at smaller sizes, no schemathesis,
#                                    no fuzzing (cargo test runs the stable fuzz test briefly), no
#                                    report: what `make test` runs
# Fuzzing: cargo-fuzz (libFuzzer) when a nightly toolchain is installed, else the stable
# proptest run of the same paths (functions/webhook/tests/fuzz_stable.rs); the report says which.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
QUICK=false
[[ ${1:-} == --quick ]] && QUICK=true
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
OUT="$ROOT/.dev/reliability-results"
mkdir -p "$OUT"

log() { echo "reliability: $*" >&2; }

scripts/ensure-venv.sh --with-cargo-lambda --with-schemathesis
export PATH="$ROOT/.venv/bin:$PATH"
# shellcheck source=scripts/local-services.sh
source scripts/local-services.sh

log "building the functions (debug)"
cargo build -q -p migrate -p config -p webhook -p processor -p logs -p mappings -p conflicts -p admin -p import

status=0
if $QUICK; then
  .venv/bin/python tools/reliability.py --quick --results "$OUT/quick.json" || status=$?
  exit "$status"
fi
.venv/bin/python tools/reliability.py --results "$OUT/cases.json" || status=$?

# ------------------------------------------------------------------ fuzzing
fuzz_json="$OUT/fuzz.json"
echo '[]' >"$fuzz_json"
record() { # target engine seconds runs crashes detail
  .venv/bin/python - "$fuzz_json" "$@" <<'PY'
import json, sys
path, target, engine, seconds, runs, crashes, detail = sys.argv[1:]
data = json.load(open(path))
data.append({"target": target, "engine": engine, "seconds": int(seconds), "runs": int(runs or 0),
             "crashes": int(crashes), "detail": detail})
json.dump(data, open(path, "w"), indent=2)
PY
}

# FUZZ_ENGINE=stable forces the proptest run even where nightly is installed.
if [[ ${FUZZ_ENGINE:-} != stable ]] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  if ! command -v cargo-fuzz >/dev/null && [[ ! -x $ROOT/.tools/bin/cargo-fuzz ]]; then
    log "installing cargo-fuzz 0.13.2 into .tools/"
    cargo install -q --locked cargo-fuzz@0.13.2 --root "$ROOT/.tools"
  fi
  export PATH="$ROOT/.tools/bin:$PATH"
  .venv/bin/python tools/fuzz_seeds.py fuzz/corpus
  log "building the fuzz targets (nightly, libFuzzer)"
  (cd fuzz && cargo +nightly fuzz build --sanitizer none -O)
  for target in webhook_body guid; do
    log "fuzzing $target for $FUZZ_SECONDS s (cargo-fuzz)"
    rc=0
    (cd fuzz && cargo +nightly fuzz run --sanitizer none -O "$target" "corpus/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -max_len=65536 -timeout=10 -print_final_stats=1) \
      >"$OUT/fuzz-$target.log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/fuzz-$target.log" | tail -n1)
    crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
    [[ $rc -ne 0 && $crashes -eq 0 ]] && crashes=1
    record "$target" "cargo-fuzz (libFuzzer, nightly)" "$FUZZ_SECONDS" "${runs:-0}" "$crashes" \
      "corpus $(find "fuzz/corpus/$target" -type f | wc -l) inputs; exit $rc"
    [[ $rc -eq 0 ]] || status=1
  done
else
  log "no nightly toolchain: the stable proptest fuzzing runs instead"
  for target in webhook_body guid; do
    rc=0
    FUZZ_SECONDS=$FUZZ_SECONDS FUZZ_TARGET=$target cargo test -q -p webhook --test fuzz_stable -- --nocapture \
      >"$OUT/fuzz-$target.log" 2>&1 || rc=$?
    runs=$(sed -n 's/^fuzz_stable: .* \([0-9]*\) cases.*/\1/p' "$OUT/fuzz-$target.log" | tail -n1)
    record "$target" "proptest (stable)" "$FUZZ_SECONDS" "${runs:-0}" "$((rc != 0))" "exit $rc"
    [[ $rc -eq 0 ]] || status=1
  done
fi

.venv/bin/python tools/reliability.py --write-report RELIABILITY.md --results "$OUT/cases.json" --fuzz "$fuzz_json"
log "RELIABILITY.md written"
exit "$status"
