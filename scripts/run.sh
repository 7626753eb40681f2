#!/usr/bin/env bash
# Load test: install what is missing, build the release Wasm modules, then
# run every load-test scenario (loadtest/src/scenarios.rs lists them; about 8 minutes on a
# 2-core machine): two Envoy gateways sharing one Redis behind webdis,
# overhead beside a no-filter baseline and Envoy's local_ratelimit,
# accuracy, token quota, a 1,000,000-request soak and a Redis outage.
# Writes loadtest/results/{report.md,results.json,latency.png,throughput.png}
# and prints a summary table; exits 1 if a check failed. Extra arguments go
# to the load test (`--smoke`, `--seconds N`, `--connections N`,
# `--soak-requests N`; LOADTEST_SECONDS sets the default of --seconds).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

# Release build, then wasm-opt -Oz into target/wasm/ (what the load test loads).
bash scripts/build.sh

echo "[run] load test"
cargo run --release -p loadtest -- "$@"
