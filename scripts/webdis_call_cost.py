#!/usr/bin/env python3
"""CPU that Redis and webdis spend per counting call, at a given call rate.

Starts redis-server and webdis on loopback (ports 16411/16412), loads the
kit's counting script (COUNT_SCRIPT in kit/src/increments.rs), then sends
N EVALSHA calls of one key over one keep-alive HTTP connection, waiting
GAP seconds after each answer, and prints the CPU time of each process
(/proc/<pid>/stat) per call. Stops both processes when done.

    python3 scripts/webdis_call_cost.py [THREADS POOL GAP N]
    python3 scripts/webdis_call_cost.py 2 16 0.003 1500   # ~300 calls/s
    python3 scripts/webdis_call_cost.py 2 16 0 1500       # back to back

Why: the load test's limiter gateways send a few hundred shared calls a
second, and what each costs Redis and webdis depends on how often they
are woken from idle, not only on the command.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

REDIS_PORT, WEBDIS_PORT = 16411, 16412
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count_script():
    source = open(os.path.join(ROOT, "kit/src/increments.rs")).read()
    body = re.search(r'pub const COUNT_SCRIPT: &str = "(.*?)";', source, re.S).group(1)
    return body.replace("\\n\\\n", "\n").replace("\\n", "\n")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    threads, pool, gap, calls = 2, 16, 0.003, 1500
    if len(sys.argv) == 5:
        threads, pool, gap, calls = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    work = tempfile.mkdtemp(prefix="webdis-cost-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    webdis = None
    try:
        time.sleep(0.5)
        config = os.path.join(work, "webdis.json")
        with open(config, "w") as f:
            json.dump({"redis_host": "127.0.0.1", "redis_port": REDIS_PORT, "http_host": "127.0.0.1",
                       "http_port": WEBDIS_PORT, "threads": threads, "pool_size": pool,
                       "daemonize": False, "database": 0, "verbosity": 3,
                       "logfile": os.path.join(work, "webdis.log")}, f)
        webdis = subprocess.Popen(["webdis", config], stdout=subprocess.DEVNULL)
        time.sleep(0.7)
        sha = subprocess.check_output(
            ["redis-cli", "-p", str(REDIS_PORT), "SCRIPT", "LOAD", count_script()]).decode().strip()
        conn = socket.create_connection(("127.0.0.1", WEBDIS_PORT), timeout=5)
        request = f"GET /EVALSHA/{sha}/1/k/60/15.raw HTTP/1.1\r\nHost: webdis\r\n\r\n".encode()

        def call():
            conn.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
            while len(body) < length:
                body += conn.recv(4096)

        for _ in range(50):
            call()
        before = cpu_seconds(redis.pid), cpu_seconds(webdis.pid)
        start = time.time()
        for _ in range(calls):
            call()
            if gap > 0:
                time.sleep(gap)
        elapsed = time.time() - start
        after = cpu_seconds(redis.pid), cpu_seconds(webdis.pid)
        print(f"threads={threads} pool={pool} {calls / elapsed:.0f} calls/s: "
              f"Redis {(after[0] - before[0]) / calls * 1e6:.1f} us, "
              f"webdis {(after[1] - before[1]) / calls * 1e6:.1f} us of CPU per call")
    finally:
        if webdis:
            webdis.kill()
        redis.kill()


if __name__ == "__main__":
    main()
