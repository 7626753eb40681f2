#!/usr/bin/env bash
# Fuzzes the kit and both plugins with cargo-fuzz (targets in fuzz/, see
# fuzz/README.md for what each checks and the long runs' numbers).
#
#   bash scripts/fuzz.sh --short      every target briefly (CI: under a minute in all)
#   bash scripts/fuzz.sh --long N     N executions per target, one target at a time
#   bash scripts/fuzz.sh --long N T   N executions of target T only
# A long run stops after FUZZ_SECONDS (default 3600) per target if N takes longer.
#
# The project has one stable toolchain and no nightly: RUSTC_BOOTSTRAP=1
# lets it take the unstable -Z flags cargo-fuzz passes (as plugin-kit does to
# build std). A crash stops the run with a non-zero exit; libFuzzer writes
# the input to fuzz/artifacts/<target>/ (ignored by git) and the fix comes
# with a unit test in the crate's tests/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

MODE=${1:-}
case "$MODE" in
  --short) ;;
  --long) [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "usage: $0 --long N [target]" >&2; exit 2; } ;;
  *) echo "usage: $0 --short | --long N [target]" >&2; exit 2 ;;
esac

# cargo-fuzz from crates.io, once.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "[fuzz] installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
cd fuzz
# One build of every target, then runs of it. No sanitizer: the code under
# test is safe Rust (the kit's unsafe FFI is wasm-only), so AddressSanitizer
# would find nothing and halve the executions; debug assertions (overflow
# checks) stay on, as cargo-fuzz builds them.
cargo fuzz build --sanitizer none
TARGETS=$(cargo fuzz list)
if [ "$MODE" = --long ] && [ -n "${3:-}" ]; then
  TARGETS=$3
fi

run() {
  local target=$1
  shift
  mkdir -p "corpus/$target" "artifacts/$target" "seeds/$target"
  # The committed seeds first, then the corpus grown by earlier runs.
  cargo fuzz run --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
}

for target in $TARGETS; do
  echo "[fuzz] $target"
  if [ "$MODE" = --short ]; then
    # Ten targets, about 50 s of fuzzing in all.
    run "$target" -max_total_time=4
  else
    # Bounded in time too, so a slow target cannot run for ever.
    run "$target" -runs="$2" -max_total_time="${FUZZ_SECONDS:-3600}"
  fi
done
echo "[fuzz] no crash"
