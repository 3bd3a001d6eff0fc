#!/usr/bin/env python3
"""Summarizes the pool-channel criterion run (bench/channels) into one small JSON file.

Reads <criterion>/<group>/<bench>/new/{estimates,benchmark,sample}.json for every group and
channel that benches/pool_channels.rs measures and writes, per group and channel, the median
throughput in elements/s (from criterion's median estimate of ns per iteration), its 95%
confidence interval, the slowest and fastest sample, and the ratio to flume. It also applies the
issue's rule: switch only if one channel is clearly faster than flume in every group, that is
its median is more than 15% above flume's and its 95% interval lies wholly above flume's (on a
busy 2-core machine single runs swing by more than 15%, so the median alone is not enough).

    python3 bench/channels/summarize.py [--criterion target/criterion]
                                        [--out target/bench/channels.json] [--markdown]

Exits non-zero if any benchmark's results are missing.
"""

import argparse
import json
import os
import platform
import sys

GROUPS = ["pool_noop", "pool_spin_2us"]
CHANNELS = ["flume", "crossbeam-channel", "tokio-mpsc"]
BASELINE = "flume"
SWITCH_THRESHOLD = 1.15


def load(path):
    with open(path) as f:
        return json.load(f)


def summarize_one(bench_dir):
    """Throughput figures for one benchmark directory, from criterion's latest run."""
    new = os.path.join(bench_dir, "new")
    est = load(os.path.join(new, "estimates.json"))
    meta = load(os.path.join(new, "benchmark.json"))
    sample = load(os.path.join(new, "sample.json"))
    elements = meta["throughput"]["Elements"]

    def rate(ns_per_iter):
        return elements / (ns_per_iter * 1e-9)

    median = est["median"]
    ci = median["confidence_interval"]
    per_iter = [t / i for t, i in zip(sample["times"], sample["iters"])]
    return {
        "elements_per_iteration": elements,
        "median_ns_per_iteration": median["point_estimate"],
        "median_elements_per_s": rate(median["point_estimate"]),
        # A longer time per iteration is a lower rate, so the bounds swap.
        "ci_low_elements_per_s": rate(ci["upper_bound"]),
        "ci_high_elements_per_s": rate(ci["lower_bound"]),
        "ci_level": ci["confidence_level"],
        "min_elements_per_s": rate(max(per_iter)),
        "max_elements_per_s": rate(min(per_iter)),
        "samples": len(per_iter),
    }


def fmt_rate(r):
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:.0f} k/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", default="target/criterion", help="criterion's output directory")
    ap.add_argument("--out", default="target/bench/channels.json", help="JSON file to write")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = ap.parse_args()

    groups, missing = {}, []
    for group in GROUPS:
        groups[group] = {}
        for channel in CHANNELS:
            d = os.path.join(args.criterion, group, channel)
            try:
                groups[group][channel] = summarize_one(d)
            except (OSError, KeyError, ValueError) as e:
                missing.append(f"{d}: {e}")
    if missing:
        sys.exit("bench-channels: missing criterion results:\n  " + "\n  ".join(missing))

    for figures in groups.values():
        base = figures[BASELINE]["median_elements_per_s"]
        for f in figures.values():
            f["ratio_vs_flume"] = f["median_elements_per_s"] / base

    def clearly_faster(group, channel):
        f, base = groups[group][channel], groups[group][BASELINE]
        return (
            f["ratio_vs_flume"] > SWITCH_THRESHOLD
            and f["ci_low_elements_per_s"] > base["ci_high_elements_per_s"]
        )

    winners = [c for c in CHANNELS if c != BASELINE and all(clearly_faster(g, c) for g in GROUPS)]
    winner = max(
        winners, key=lambda c: min(groups[g][c]["ratio_vs_flume"] for g in GROUPS), default=None
    )
    result = {
        "what": "pool channel in the engine's pattern (bench/channels): 1 producer, batches of "
        "1024, <= 8192 outstanding, 2 blocking workers, Mutex+Condvar completion queue",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            # Taken when this script runs, right after the benchmark: a hint of other load.
            "loadavg_after": os.getloadavg(),
        },
        "groups": groups,
        "rule": f"switch only if, in every group, a channel's median is > {SWITCH_THRESHOLD:.2f}x "
        "flume's and its 95% CI lies above flume's",
        "verdict": f"switch to {winner}" if winner else "keep flume",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print(f"bench-channels: wrote {args.out}")
    for group, figures in groups.items():
        for channel, f in figures.items():
            print(
                f"  {group:14} {channel:18} median {fmt_rate(f['median_elements_per_s']):>10}"
                f"  (95% CI {fmt_rate(f['ci_low_elements_per_s'])} - {fmt_rate(f['ci_high_elements_per_s'])},"
                f" samples {fmt_rate(f['min_elements_per_s'])} - {fmt_rate(f['max_elements_per_s'])})"
                f"  {f['ratio_vs_flume']:.2f}x flume"
            )
    print(f"  verdict: {result['verdict']}")
    if args.markdown:
        print()
        print("| group | channel | median jobs/s | 95% CI | slowest – fastest sample | vs flume |")
        print("|---|---|---:|---:|---:|---:|")
        for group, figures in groups.items():
            for channel, f in figures.items():
                print(
                    f"| {group} | {channel} | {fmt_rate(f['median_elements_per_s'])} "
                    f"| {fmt_rate(f['ci_low_elements_per_s'])} – {fmt_rate(f['ci_high_elements_per_s'])} "
                    f"| {fmt_rate(f['min_elements_per_s'])} – {fmt_rate(f['max_elements_per_s'])} "
                    f"| {f['ratio_vs_flume']:.2f}× |"
                )


if __name__ == "__main__":
    main()
