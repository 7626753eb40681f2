#!/usr/bin/env bash
# Per-request cost of four modules on the same requests through testhost:
# wasm instructions (wasmtime fuel), host calls, guest linear memory after
# the first and after the Nth request. Deterministic: the numbers do not
# depend on this machine's speed (the clock is virtual; Redis is real).
#
#   bash testhost/measure/run.sh [N]      # N requests per module, default 100000
#
# Needs: bash scripts/build.sh --higress, and PyPI gpustack-higress-plugins
# 0.5.1 in .venv (bash scripts/setup.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N="${1:-100000}"
here=testhost/measure
plugins=$(ls -d .venv/lib/python3*/site-packages/gpustack_higress_plugins/plugins 2>/dev/null | head -1)
[ -n "$plugins" ] || { echo "gpustack-higress-plugins is not installed: bash scripts/setup.sh" >&2; exit 1; }
cargo build -q -p testhost
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed "s/@N@/$N/" "$here/requests.jsonl.in" > "$work/requests.jsonl"
echo "| module | size (bytes) | fuel, request 1 | fuel per request, mean of 2..$N | host calls, request 1 | host calls per request, mean of 2..$N | linear memory after 1 | after $N |"
echo "|---|---|---|---|---|---|---|---|"
for spec in \
    "limiter:target/wasm/higress/limiter.wasm" \
    "gpustack-rate-limit:$plugins/gpustack-rate-limit/1.0.1/plugin.wasm" \
    "token_quota:target/wasm/higress/token_quota.wasm" \
    "ai-statistics:$plugins/ai-statistics/2.0.0/plugin.wasm"; do
    name=${spec%%:*}
    module=${spec#*:}
    target/debug/testhost --module "$module" --config "$here/$name.json" \
        --requests "$work/requests.jsonl" --start-redis 'outbound|6379||redis.dns' --every "$N" \
        > "$work/$name.out"
    python3 - "$name" "$module" "$work/$name.out" <<'PY'
import json, os, sys
name, module, out = sys.argv[1:]
lines = [json.loads(l) for l in open(out)]
first, last = lines[0], lines[-1]
for l in (first, last):
    assert l["status"] == 200, (name, l["n"], l["status"], l["verdict"])
span = last["n"] - first["n"]
fuel = (last["fuel_total"] - first["fuel_total"]) / span
calls = (last["host_calls_total"] - first["host_calls_total"]) / span
print(f"| {name} | {os.path.getsize(module):,} | {first['fuel']:,} | {fuel:,.0f} | {first['host_calls']} | {calls:.1f} "
      f"| {first['memory_bytes']:,} | {last['memory_bytes']:,} |")
PY
done
