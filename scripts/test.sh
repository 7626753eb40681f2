#!/usr/bin/env bash
# Everything CI checks: install what is missing, build the release Wasm
# module the end-to-end tests load, then run every test of the workspace
# (unit, harness, webdis behaviour and Envoy end-to-end). Exits non-zero on
# any failure; --no-fail-fast so one failing crate does not hide the others.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "[test] building limiter.wasm and token_quota.wasm (release, wasm32-wasip1)"
cargo build --release --target wasm32-wasip1 -p limiter -p token-quota
ls -l target/wasm32-wasip1/release/limiter.wasm target/wasm32-wasip1/release/token_quota.wasm

echo "[test] formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p kit -p limiter -p token-quota --all-targets --features kit/higress,kit/fake -- -D warnings
# The proxy glue exists only in wasm builds.
cargo clippy --target wasm32-wasip1 -p kit -p limiter -p token-quota -- -D warnings
cargo clippy --target wasm32-wasip1 -p kit -p limiter -p token-quota --features kit/higress -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc -p kit --no-deps --features fake

echo "[test] cargo test --workspace"
cargo test --workspace --no-fail-fast

echo "[test] load test smoke run: every scenario, tiny (results in loadtest/results/smoke/)"
cargo run --release -p loadtest -- --smoke

echo "[test] limiter over Higress's native Redis transport (--features higress)"
cargo test -p limiter --features higress --test native_redis
echo "[test] the higress builds import Higress's Redis host calls (the default builds must not: e2e checks that)"
cargo build --release --target wasm32-wasip1 -p limiter -p token-quota --features limiter/higress,token-quota/higress --target-dir target/higress
for module in limiter token_quota; do
  imports=$(wasm-objdump -x -j Import "target/higress/wasm32-wasip1/release/$module.wasm")
  for call in env.proxy_redis_init env.proxy_redis_call; do
    grep -q "$call" <<<"$imports" || { echo "[test] FAIL: higress $module.wasm does not import $call"; exit 1; }
  done
  wasm-objdump -x -j Export "target/higress/wasm32-wasip1/release/$module.wasm" | grep -q '"proxy_on_redis_call_response"' \
    || { echo "[test] FAIL: higress $module.wasm does not export proxy_on_redis_call_response"; exit 1; }
done
echo "[test] higress builds import proxy_redis_init and proxy_redis_call and export proxy_on_redis_call_response"
