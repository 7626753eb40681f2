#!/usr/bin/env bash
# Builds the plugins to deploy with `plugin-kit build` (the same command a
# plugin author runs on their own crate; see plugin-kit/src/build.rs for
# every flag and why): the release profile, std compiled with the module, a
# cdylib-only link, then `wasm-opt --low-memory-unused -Oz --flatten --rereloop -Oz --converge` into
# target/wasm/, which the end-to-end tests and the load test load. Prints
# the sizes.
#
#   target/wasm32-wasip1/release/<name>.wasm   cargo's release build
#   target/wasm/<name>.wasm                    the same after wasm-opt
#
# `--higress` builds the Higress variants (native Redis host calls) into
# target/higress/ and target/wasm/higress/ instead; `--heap-stats` the
# variants that count their heap allocations (kit feature `heap-stats`, for
# the end-to-end test of zero allocation inside Envoy) into
# target/heap-stats/ and target/wasm/heap-stats/. `--sdk` builds the same
# plugins on the standard proxy-wasm crate (kit feature `proxy-wasm`) into
# target/sdk/ and target/wasm-sdk/ (the end-to-end tests load them with
# KIT_WASM_DIR=target/wasm-sdk); `--sdk-heap-stats` those, counting their
# heap allocations, into target/sdk-heap-stats/ and target/wasm-sdk/heap-stats/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=target
out=target/wasm
features=()
if [ "${1:-}" = "--higress" ]; then
    target=target/higress
    out=target/wasm/higress
    features=(--features kit/higress)
elif [ "${1:-}" = "--heap-stats" ]; then
    target=target/heap-stats
    out=target/wasm/heap-stats
    features=(--features kit/heap-stats)
elif [ "${1:-}" = "--sdk" ]; then
    target=target/sdk
    out=target/wasm-sdk
    features=(--features kit/proxy-wasm)
elif [ "${1:-}" = "--sdk-heap-stats" ]; then
    target=target/sdk-heap-stats
    out=target/wasm-sdk/heap-stats
    features=(--features kit/proxy-wasm,kit/heap-stats)
elif [ -n "${1:-}" ]; then
    echo "[build] unknown argument $1 (expected --higress, --heap-stats, --sdk or --sdk-heap-stats)" >&2
    exit 2
fi

cargo build --quiet -p plugin-kit
packages=(limiter token-quota)
# The example plugin written on the proxy-wasm crate with the kit's pieces
# (e2e/tests/sdk_interop.rs loads it).
if [ "$out" = target/wasm-sdk ]; then
    packages+=(sdk-interop)
fi
for package in "${packages[@]}"; do
    target/debug/plugin-kit build -p "$package" --target-dir "$target" --out "$out" "${features[@]}"
done
