"""Draws the load test's charts from its results.json.

Usage: .venv/bin/python loadtest/charts.py RESULTS_JSON OUT_DIR
(the load test runs this itself; scripts/setup.sh installs matplotlib).

- latency.png: p50/p90/p99/p99.9 of every scenario, log scale.
- throughput.png: each scenario's req/s beside its no-filter baseline.
"""

import json
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

PERCENTILES = [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99_9", "p99.9")]


def label(title: str) -> str:
    return "\n".join(textwrap.wrap(title, 38))


def latency_chart(results: dict, path: str) -> None:
    scenarios = results["scenarios"]
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(scenarios) * 2 + 1.5))
    height = 0.2
    for i, (key, name) in enumerate(PERCENTILES):
        values = [s["wrk"]["latency_us"][key] / 1000.0 for s in scenarios]
        positions = [row + (i - 1.5) * height for row in range(len(scenarios))]
        ax.barh(positions, values, height=height, label=name)
    ax.set_yticks(range(len(scenarios)))
    ax.set_yticklabels([label(s["title"]) for s in scenarios], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_title(f"Latency percentiles per scenario ({results['date_utc']})")
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def throughput_chart(results: dict, path: str) -> None:
    by_id = {s["id"]: s for s in results["scenarios"]}
    rows = [r for r in results["ratios"]]
    fig, ax = plt.subplots(figsize=(11, 0.9 * len(rows) + 1.5))
    height = 0.38
    for row, r in enumerate(rows):
        ax.barh(row - height / 2, r["requests_per_sec"], height=height, color="tab:blue",
                label="scenario" if row == 0 else None)
        ax.barh(row + height / 2, r["baseline_requests_per_sec"], height=height,
                color="tab:gray", label="its no-filter baseline" if row == 0 else None)
        ax.text(r["requests_per_sec"], row - height / 2, f" {r['throughput']:.2f}x",
                va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label(by_id[r["id"]]["title"]) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("requests per second")
    ax.set_title("Requests per second beside the baseline")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        results = json.load(f)
    out = sys.argv[2].rstrip("/")
    latency_chart(results, f"{out}/latency.png")
    throughput_chart(results, f"{out}/throughput.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
