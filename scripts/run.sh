#!/usr/bin/env bash
# Load test: install what is missing, build the release Wasm module, then
# run wrk against Envoy without a filter and with the limiter (see
# loadtest/src/main.rs). Prints a markdown table and writes it to
# target/loadtest/report.md. Duration: LOADTEST_SECONDS (default 10) or
# `--seconds N`; extra arguments go to the load test.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "[run] building limiter.wasm and token_quota.wasm (release, wasm32-wasip1)"
cargo build --release --target wasm32-wasip1 -p limiter -p token-quota

echo "[run] load test"
cargo run --release -p loadtest -- "$@"
