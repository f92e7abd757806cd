#!/usr/bin/env bash
# `make import-demo`: imports a generated library of 2,000 shows and 50,000 watched episodes
# end to end (import handler -> moto FIFO queue -> four processor workers -> Postgres, with HTTP
# stand-ins for the Plex server and TMDB), checks every tracker show exactly, and writes the
# time and TMDB request count into BENCHMARKS.md (section "History import at scale").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# shellcheck source=scripts/local-services.sh
source scripts/local-services.sh

rm -f target/import-demo.md
cargo test -p import --test scale -- --ignored --nocapture import_demo_2000_shows
.venv/bin/python - <<'PY'
from pathlib import Path
bench = Path("BENCHMARKS.md")
text = bench.read_text()
begin, end = "<!-- import-demo:begin -->", "<!-- import-demo:end -->"
result = Path("target/import-demo.md").read_text().strip()
head, _, rest = text.partition(begin)
_, _, tail = rest.partition(end)
bench.write_text(f"{head}{begin}\n{result}\n{end}{tail}")
print("import-demo: BENCHMARKS.md updated")
PY
