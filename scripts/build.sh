#!/usr/bin/env bash
# Builds the plugins to deploy: the release Wasm modules, then `wasm-opt -Oz`
# (Debian binaryen) into target/wasm/, which the end-to-end tests and the
# load test load. Prints the sizes. Extra arguments go to `cargo build`.
#
#   target/wasm32-wasip1/release/<name>.wasm   cargo's release build
#   target/wasm/<name>.wasm                    the same after wasm-opt -Oz
#
# `--higress` builds the Higress variants (native Redis host calls) into
# target/higress/ and target/wasm/higress/ instead; `--heap-stats` the
# variants that count their heap allocations (kit feature `heap-stats`, for
# the end-to-end test of zero allocation inside Envoy) into
# target/heap-stats/ and target/wasm/heap-stats/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=target
out=target/wasm
features=()
if [ "${1:-}" = "--higress" ]; then
    shift
    target=target/higress
    out=target/wasm/higress
    features=(--features kit/higress --target-dir "$target")
elif [ "${1:-}" = "--heap-stats" ]; then
    shift
    target=target/heap-stats
    out=target/wasm/heap-stats
    features=(--features kit/heap-stats --target-dir "$target")
fi

# The modules link a std compiled with them rather than the prebuilt one, so
# that a panic is one `unreachable` trap instead of std's panic hook (message
# formatting, stderr, the `RUST_BACKTRACE` lookup, and the libc allocator it
# keeps linked): 30 KB less per module with talc as the allocator, which only
# pays once that is gone (README "Module size"). A panic then
# leaves no message in the proxy's log, only the trap; the kit's lib code
# denies `unwrap`, `expect` and `panic!` so that none is expected.
# `-Zbuild-std` and these flags are unstable; RUSTC_BOOTSTRAP=1 lets this
# stable toolchain take them, and std's source is the `rust-src` component of
# the very same toolchain (scripts/setup.sh adds it), so the two cannot drift
# apart. A plain `cargo build --release --target wasm32-wasip1` still works
# and gives the larger module with the prebuilt std.
OWN_STD=(-Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size
    --config 'target.wasm32-wasip1.rustflags = ["-Zunstable-options", "-Cpanic=immediate-abort", "-Zlocation-detail=none"]')

# Each plugin is built as a cdylib alone: its Cargo.toml also asks for an
# rlib (its tests and the benches link it), and a package that builds both
# kinds gets no link-time optimisation across crates (cargo issue 9672),
# which costs each module about a tenth of its size.
echo "[build] limiter and token-quota (release, wasm32-wasip1, cdylib only, own std${features:+, ${features[1]}})"
for package in limiter token-quota; do
    RUSTC_BOOTSTRAP=1 cargo rustc --release --target wasm32-wasip1 -p "$package" --crate-type cdylib \
        "${OWN_STD[@]}" "${features[@]}" "$@"
done

# Rust emits these proposals and binaryen 108 enables none by default; the
# stripped module carries no target_features section to tell it.
WASM_OPT_FEATURES=(--enable-reference-types --enable-multivalue --enable-bulk-memory
    --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals
    --enable-extended-const)
mkdir -p "$out"
for module in limiter token_quota; do
    built="$target/wasm32-wasip1/release/$module.wasm"
    wasm-opt "${WASM_OPT_FEATURES[@]}" -Oz "$built" -o "$out/$module.wasm"
    printf '[build] %-40s %8d bytes\n' "$built" "$(stat -c %s "$built")"
    printf '[build] %-40s %8d bytes (wasm-opt -Oz)\n' "$out/$module.wasm" "$(stat -c %s "$out/$module.wasm")"
done
