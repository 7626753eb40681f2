#!/usr/bin/env bash
# docker-compose.yaml's stack without Docker, and the load test's external
# mode against it: `compose-stack` starts the compose file's services as
# local processes on its published ports (127.0.0.1 only), then
# `loadtest --stack compose --smoke` runs every external scenario against
# them, the fault scenario included (Redis frozen with SIGSTOP and thawed
# with SIGCONT: a Redis that accepts connections and never answers), then
# the generic mode (`--gateway ... --token-quota-* --limiter-pass
# --token-quota-pass-*`) against the same
# ports, as a user names their own gateway: nothing read from the compose
# files, the token quota's limit read from its refusals, the quota routes
# driven at /v1/chat/completions.
# Bounded: the stack stops itself after 1200 s, each load test is killed
# after 540 s, and the stack is stopped on any exit of this script.
# Needs the modules of scripts/build.sh and the tools of scripts/setup.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -p loadtest
cargo build -p stack --bin compose-stack
log=target/compose-stack.out
target/debug/compose-stack --for 1200 >"$log" 2>&1 &
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

timeout 540 target/release/loadtest --stack compose --smoke \
  --redis-stop "kill -STOP $redis_pid" --redis-start "kill -CONT $redis_pid"

# The ports below are the compose file's (loadtest/compose/gateway.yaml):
# the limiter :10000, its no-filter route :10003, the token quota :10001
# (JSON) and :10002 (event streams) with rules compose-json and
# compose-sse, the no-filter route to the same upstream :10004 (event
# streams under /sse), the same plugins with limits never reached (the
# overhead rows) :10005 (limiter), :10006 and :10007 (token quota), the
# gateway's admin :15000, Redis :6379.
timeout 540 target/release/loadtest --smoke \
  --gateway http://127.0.0.1:10000 --baseline http://127.0.0.1:10003 \
  --redis 127.0.0.1:6379 --admin http://127.0.0.1:15000 \
  --token-quota-json http://127.0.0.1:10001/v1/chat/completions \
  --token-quota-sse http://127.0.0.1:10002/v1/chat/completions \
  --token-quota-baseline http://127.0.0.1:10004/v1/chat/completions,http://127.0.0.1:10004/sse \
  --token-quota-rule compose-json,compose-sse \
  --limiter-pass http://127.0.0.1:10005 \
  --token-quota-pass-json http://127.0.0.1:10006/v1/chat/completions \
  --token-quota-pass-sse http://127.0.0.1:10007/v1/chat/completions
