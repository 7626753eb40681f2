#!/usr/bin/env bash
# Everything CI checks: install what is missing, build the release Wasm
# module the end-to-end tests load, then run every test of the workspace
# (unit, harness, webdis behaviour and Envoy end-to-end). Exits non-zero on
# any failure; --no-fail-fast so one failing crate does not hide the others.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "[test] building limiter.wasm (release, wasm32-wasip1)"
cargo build --release --target wasm32-wasip1 -p limiter
ls -l target/wasm32-wasip1/release/limiter.wasm

echo "[test] formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p kit -p limiter --all-targets --features kit/higress,kit/fake -- -D warnings

echo "[test] cargo test --workspace"
cargo test --workspace --no-fail-fast

echo "[test] limiter over Higress's native Redis transport (--features higress)"
cargo test -p limiter --features higress --test native_redis
