#!/usr/bin/python3
"""Draws bench/results.png from the figures of one `make bench` run.

usage: plot.py GET_JSON SUITE_JSON OUT_PNG

GET_JSON is {"server": {"rps": ..., "cpu_us": ...}} from bench/run.sh's
GetPhoneCall table; SUITE_JSON is written by bench/suite.py.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"uapi-sidecar": "tab:blue", "ref-grpc++": "tab:orange",
          "nghttpd": "tab:gray"}


def bars(ax, groups, series, ylabel, title):
    """groups: x labels; series: {name: [value per group or None]}."""
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        ys = [v if v is not None else 0 for v in values]
        ax.bar(xs, ys, width, label=name, color=COLORS.get(name))
        for x, v in zip(xs, values):
            if v is not None:
                ax.annotate("%.0f" % v, (x, v), ha="center", va="bottom",
                            fontsize=7)
    ax.set_xticks([g + width * (len(series) - 1) / 2
                   for g in range(len(groups))])
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)


def main():
    get_json, suite_json, out_png = sys.argv[1:4]
    with open(get_json) as f:
        get = json.load(f)
    with open(suite_json) as f:
        suite = json.load(f)
    servers = [s for s in COLORS if s in get]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))

    bars(axes[0][0], ["GetPhoneCall", "OnHold/OffHold"],
         {s: [get[s]["rps"], suite["pairs"].get(s, {}).get("rps")]
          for s in servers},
         "requests/s (one server core)", "Peak throughput, 100 streams")

    lat = suite["latency"]
    bars(axes[0][1], ["p50", "p99"],
         {s: [lat[s]["p50_us"], lat[s]["p99_us"]] for s in servers
          if s in lat},
         "µs", "GetPhoneCall latency at half of each server's peak")
    axes[0][1].set_yscale("log")

    ax = axes[1][0]
    for s, points in suite["streams"].items():
        ax.plot([p["streams"] for p in points], [p["rps"] for p in points],
                marker="o", label=s, color=COLORS.get(s))
    ax.set_xscale("log")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("requests/s")
    ax.set_title("GetPhoneCall throughput by concurrent streams", fontsize=10)
    ax.legend(fontsize=8)

    ax = axes[1][1]
    calls = [p["calls"] for p in suite["calls"]]
    for key, label in [("get", "GetPhoneCall"),
                       ("list_first", "ListPhoneCalls, first page"),
                       ("list_middle", "ListPhoneCalls, middle page")]:
        ax.plot(calls, [p[key]["rps"] for p in suite["calls"]], marker="o",
                label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("calls held by the engine")
    ax.set_ylabel("requests/s")
    ax.set_title("uapi-sidecar by calls held", fontsize=10)
    ax.legend(fontsize=8)

    fig.suptitle("uapi-sidecar benchmark (bench/RESULTS.md)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)


if __name__ == "__main__":
    main()
