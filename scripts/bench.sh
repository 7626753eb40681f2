#!/usr/bin/env bash
# Runs the criterion suite (crate `benches`): every group, the kit beside
# its alternatives, with the allocation checks that come before timing.
#   scripts/bench.sh            full run, about 4.5 minutes once built (the LTO build takes ~1.5 minutes more)
#   scripts/bench.sh --quick    short runs for CI (BENCH_QUICK=1), under 2 minutes once built
# Any further arguments go to criterion, e.g. `scripts/bench.sh --quick limiter_request`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == "--quick" ]]; then
  shift
  export BENCH_QUICK=1
fi

echo "[bench] $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p benches --bench kit -- "$@"
echo "[bench] done, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
