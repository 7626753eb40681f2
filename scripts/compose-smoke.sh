#!/usr/bin/env bash
# docker-compose.yaml's stack without Docker, and the load test's external
# mode against it: `compose-stack` starts the compose file's services as
# local processes on its published ports (127.0.0.1 only), then
# `loadtest --stack compose --smoke` runs every external scenario against
# them, the fault scenario included (Redis frozen with SIGSTOP and thawed
# with SIGCONT: a Redis that accepts connections and never answers).
# Bounded: the stack stops itself after 600 s, the load test is killed
# after 600 s, and the stack is stopped on any exit of this script.
# Needs the modules of scripts/build.sh and the tools of scripts/setup.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -p loadtest
cargo build -p stack --bin compose-stack
log=target/compose-stack.out
target/debug/compose-stack --for 600 >"$log" 2>&1 &
stack_pid=$!
trap 'kill "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true' EXIT

for _ in $(seq 120); do
  grep -q '^compose-stack: ready' "$log" && break
  kill -0 "$stack_pid" 2>/dev/null || break
  sleep 0.5
done
cat "$log"
grep -q '^compose-stack: ready' "$log" \
  || { echo "[compose-smoke] FAIL: compose-stack did not come up"; exit 1; }

redis_pid=$(awk '$2 == "redis" && $3 == "pid" { print $4 }' "$log")
[ -n "$redis_pid" ] || { echo "[compose-smoke] FAIL: no redis pid in $log"; exit 1; }

timeout 600 target/release/loadtest --stack compose --smoke \
  --redis-stop "kill -STOP $redis_pid" --redis-start "kill -CONT $redis_pid"
