#!/usr/bin/env python3
"""Summarise bench/nats.sh result folders (OUT/<scenario>/<system>/repN/).

  nats_summary.py --one RUN_DIR               one line for a single run
  nats_summary.py OUT_DIR "SYSTEM ..." CROSS  markdown: one table per scenario
Figures are medians over the reps with (min-max); ratios are of the medians.
"""
import glob
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from summarize import med, timefile  # noqa: E402  (bench/run.sh's summary, beside this file)

SCENARIOS = ["1to1", "1to4"]


def run_metrics(d):
    m = {"rep": os.path.basename(d.rstrip("/"))}
    try:
        with open(os.path.join(d, "result.json")) as f:
            r = json.loads(f.read().strip().splitlines()[-1])
    except (FileNotFoundError, IndexError, ValueError):
        r = None
    if r:
        m["received"], m["expected"], m["lost"] = r["received"], r["expected"], r["lost"]
        m["rate"] = r["receive_msgs_per_sec"]
        m["pub_rate"] = r["publish_msgs_per_sec"]
        per_sub = [s["msgs_per_sec"] for s in r.get("per_sub", [])]
        if per_sub:
            m["slowest_sub"] = min(per_sub)
        m["p50"], m["p99"] = r["latency_us"]["p50"], r["latency_us"]["p99"]
        if "slow_consumer_events" in r:
            m["slow"] = sum(r["slow_consumer_events"])
            m["disconnects"] = sum(r["disconnects"])
    # Every server of the run (nats-server, proxies A and B): CPU summed, peak RSS the largest.
    times = [timefile(t) for t in sorted(glob.glob(os.path.join(d, "*.time")))]
    cpus = [t["cpu_s"] for t in times if "cpu_s" in t]
    rss = [t["rss_mb"] for t in times if "rss_mb" in t]
    if cpus:
        m["cpu"] = sum(cpus)
    if rss:
        m["rss"] = max(rss)
    err = os.path.join(d, "error")
    if os.path.exists(err):
        m["error"] = " / ".join(open(err).read().split("\n")).strip(" /")
    elif r is None:
        m["error"] = "no result (see client.err)"
    return m


def fmt_one(rel, m):
    parts = [rel]
    if "received" in m:
        parts.append("received=%d/%d lost=%d" % (m["received"], m["expected"], m["lost"]))
        parts.append("rate=%.0f p50=%.0fus p99=%.0fus" % (m["rate"], m["p50"], m["p99"]))
    if "slow" in m:
        parts.append("slow_consumer=%d disconnects=%d" % (m["slow"], m["disconnects"]))
    if "cpu" in m:
        parts.append("server_cpu=%.2fs" % m["cpu"])
    if "error" in m:
        parts.append("ERROR: " + m["error"])
    return "  " + " ".join(parts)


def values(ms, key):
    return [m[key] for m in ms if key in m and "error" not in m]


def ratio(a, b):
    if not a or not b or statistics.median(b) == 0:
        return "-"
    return "%.2f" % (statistics.median(a) / statistics.median(b))


ROWS = [  # label, key, format, scale, unit
    ("delivered msg/s, all subscribers", "rate", "%.2f", 1e6, " M"),
    ("delivered msg/s, slowest subscriber", "slowest_sub", "%.2f", 1e6, " M"),
    ("published msg/s", "pub_rate", "%.2f", 1e6, " M"),
    ("latency p50 µs", "p50", "%.0f", 1.0, ""),
    ("latency p99 µs", "p99", "%.0f", 1.0, ""),
    ("server CPU s (all servers of the run)", "cpu", "%.2f", 1.0, ""),
    ("server peak RSS MB (largest)", "rss", "%.1f", 1.0, ""),
]


def main():
    if sys.argv[1] == "--one":
        d = sys.argv[2]
        print(fmt_one("/".join(d.rstrip("/").split("/")[-3:]), run_metrics(d)))
        return
    out = sys.argv[1]
    order = sys.argv[2].split() if len(sys.argv) > 2 else []
    cross = len(sys.argv) > 3 and sys.argv[3] == "1"
    meta = {}
    for line in open(os.path.join(out, "meta.txt")):
        for kv in line.split():
            k, _, v = kv.partition("=")
            meta.setdefault(k, v)
    data = {}  # (scenario, system) -> [metrics per rep]
    for sc in SCENARIOS:
        for sysdir in glob.glob(os.path.join(out, sc, "*")):
            reps = sorted(glob.glob(os.path.join(sysdir, "rep*")))
            data[(sc, os.path.basename(sysdir))] = [run_metrics(r) for r in reps]
    systems = [s for s in order if any(k[1] == s for k in data)]
    systems += sorted({k[1] for k in data} - set(systems))
    if cross:
        pairs = [(s, "xbus") for s in ("xbus_local", "xbus_cross") if s in systems and "xbus" in systems]
    else:
        pairs = [("xbus", "nats")] if "xbus" in systems and "nats" in systems else []

    print("%s messages of %s B per run, %s reps, medians (min–max); ratios are of the medians.\n"
          % (meta.get("N", "?"), meta.get("SIZE", "?"), meta.get("reps", "?")))
    errors = []
    for sc in SCENARIOS:
        if not any(k[0] == sc for k in data):
            continue
        head = [sc] + systems + ["%s/%s" % p for p in pairs]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for label, key, f, scale, unit in ROWS:
            row = [label]
            for s in systems:
                row.append(med(values(data.get((sc, s), []), key), f, scale, unit))
            for a, b in pairs:
                row.append(ratio(values(data.get((sc, a), []), key),
                                 values(data.get((sc, b), []), key)))
            print("| " + " | ".join(row) + " |")
        row = ["lost, median (max)"]
        for s in systems:
            lost = values(data.get((sc, s), []), "lost")
            row.append("%d (%d)" % (statistics.median(lost), max(lost)) if lost else "-")
        row += [""] * len(pairs)
        print("| " + " | ".join(row) + " |")
        if "nats" in systems:
            row = ["NATS slow-consumer notices / disconnects, max"]
            for s in systems:
                ms = data.get((sc, s), [])
                slow, disc = values(ms, "slow"), values(ms, "disconnects")
                row.append("%d / %d" % (max(slow), max(disc)) if slow else "-")
            row += [""] * len(pairs)
            print("| " + " | ".join(row) + " |")
        print()
        for s in systems:
            for m in data.get((sc, s), []):
                if "error" in m:
                    errors.append("%s/%s/%s: %s" % (sc, s, m["rep"], m["error"]))
    if errors:
        print("Failed runs (not in the medians above):\n")
        for e in errors:
            print("- " + e)


if __name__ == "__main__":
    main()
