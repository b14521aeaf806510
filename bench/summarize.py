#!/usr/bin/env python3
"""Summarise bench/run.sh result folders (OUT/<scenario>/<proxy>/repN/).

  summarize.py --one RUN_DIR            one line for a single run
  summarize.py OUT_DIR ["PROXY ..."]    markdown: comparison table, then the full table
Figures are medians over the reps with (min-max).
"""
import glob
import os
import re
import statistics
import sys

TOPIC_LEN = 12  # "Bench.t0000."
SCENARIOS = ["thr1", "fan4", "filter10", "lat", "hol"]


def results(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("RESULT "):
                    out.append(dict(kv.partition("=")[::2] for kv in line.split()[1:]))
    except FileNotFoundError:
        pass
    return out


def timefile(path):
    d = {}
    try:
        txt = open(path).read()
    except FileNotFoundError:
        return d
    u = re.search(r"User time \(seconds\): ([\d.]+)", txt)
    s = re.search(r"System time \(seconds\): ([\d.]+)", txt)
    r = re.search(r"Maximum resident set size \(kbytes\): (\d+)", txt)
    if u and s:
        d["cpu_s"] = float(u.group(1)) + float(s.group(1))
    if r:
        d["rss_mb"] = int(r.group(1)) / 1024.0
    return d


def run_metrics(d):
    subs = []
    for f in sorted(glob.glob(os.path.join(d, "sub*.out"))):
        subs += results(f)
    pub = results(os.path.join(d, "pub.out"))
    size = int(os.environ.get("SIZE", "100") or 100)
    m = {"nsubs": len(subs)}
    recv = sum(int(s["recv"]) for s in subs)
    exp = sum(int(s["expected"]) for s in subs)
    m["recv"], m["expected"], m["lost"] = recv, exp, exp - recv
    live = [s for s in subs if int(s["recv"]) > 0]
    firsts = [int(s["first_ns"]) for s in live]
    lasts = [int(s["last_ns"]) for s in live]
    if firsts and max(lasts) > min(firsts):
        m["agg_rate"] = recv / ((max(lasts) - min(firsts)) / 1e9)
        m["agg_MBps"] = m["agg_rate"] * (size + TOPIC_LEN) / 1e6
    if pub and lasts:
        m["wall_s"] = (max(lasts) - int(pub[0]["start_ns"])) / 1e9
    for s in subs:
        if "lat_p50_us" in s:
            for q in ("p50", "p99", "p999", "max"):
                m["lat_" + q] = float(s["lat_%s_us" % q])
    m["rep"] = os.path.basename(d.rstrip("/"))
    m.update(timefile(os.path.join(d, "proxy.time")))
    err = os.path.join(d, "error")
    if os.path.exists(err):
        m["error"] = " / ".join(open(err).read().split("\n")).strip(" /")
    if not subs and "error" not in m:
        m["error"] = "no subscriber result (see sub*.err)"
    return m


def fmt_one(rel, m):
    parts = [rel]
    for k in ("recv", "expected", "lost", "agg_rate", "wall_s", "cpu_s", "rss_mb", "lat_p50", "lat_p99", "lat_max"):
        if k in m:
            v = m[k]
            parts.append("%s=%s" % (k, ("%.0f" % v) if isinstance(v, float) and v > 100 else (
                "%.2f" % v if isinstance(v, float) else v)))
    if "error" in m:
        parts.append("ERROR: " + m["error"])
    return "  " + " ".join(parts)


def med(vals, f="%.0f", scale=1.0, unit=""):
    vals = [v / scale for v in vals if v is not None]
    if not vals:
        return "-"
    md = (f % statistics.median(vals)) + unit
    if len(vals) == 1:
        return md
    return "%s (%s–%s)" % (md, f % min(vals), f % max(vals))


def lost_s(ms):
    lost = [m["lost"] for m in ms if "lost" in m and m.get("nsubs")]
    if not lost:
        return "-"
    return "%d (%d)" % (statistics.median(lost), max(lost))


def main():
    if sys.argv[1] == "--one":
        d = sys.argv[2]
        print(fmt_one("/".join(d.rstrip("/").split("/")[-3:]), run_metrics(d)))
        return
    out = sys.argv[1]
    order = sys.argv[2].split() if len(sys.argv) > 2 else []
    data = {}  # (scenario, proxy) -> (n, [metrics per rep])
    for sc in sorted(os.listdir(out), key=lambda s: SCENARIOS.index(s) if s in SCENARIOS else 99):
        if not os.path.isdir(os.path.join(out, sc)):
            continue
        for px in os.listdir(os.path.join(out, sc)):
            reps = sorted(glob.glob(os.path.join(out, sc, px, "rep*")))
            n = open(os.path.join(reps[0], "n")).read().strip() if reps else "?"
            data[(sc, px)] = (n, [run_metrics(r) for r in reps])
    scens = [s for s in SCENARIOS if any(k[0] == s for k in data)]
    proxies = [p for p in order if any(k[1] == p for k in data)]
    proxies += sorted({k[1] for k in data} - set(proxies))

    # Comparison table: one row per figure, one column per proxy (the README's shape).
    def cell(sc, px, fn):
        if (sc, px) not in data:
            return "-"
        return fn(data[(sc, px)][1])

    def rate_lost(ms):
        lost = [m["lost"] for m in ms if m.get("nsubs")]
        tail = ", %d lost" % statistics.median(lost) if lost else ""
        return med([m.get("agg_rate") for m in ms], "%.2f", 1e6, " M") + tail

    def lat(ms):
        return "%s / %s" % (med([m.get("lat_p50") for m in ms]), med([m.get("lat_p99") for m in ms]))

    def hol(ms):
        return "%s lost, p99 %s µs" % (lost_s(ms).split()[0], med([m.get("lat_p99") for m in ms]))

    rows = []
    names = {"thr1": "thr1: 1 pub → 1 sub, msg/s", "fan4": "fan4: 1 pub → 4 subs, aggregate msg/s",
             "filter10": "filter10: 10 subs, 1 of 100 topics each, aggregate msg/s"}
    for sc in ("thr1", "fan4", "filter10"):
        if sc in scens:
            rows.append((names[sc], [cell(sc, p, rate_lost) for p in proxies]))
    if "lat" in scens:
        rows.append(("lat: p50 / p99 µs at a fixed rate", [cell("lat", p, lat) for p in proxies]))
    if "thr1" in scens:
        rows.append(("proxy CPU s, thr1", [cell("thr1", p, lambda ms: med([m.get("cpu_s") for m in ms], "%.2f"))
                                           for p in proxies]))
    if "hol" in scens:
        rows.append(("hol: healthy subscriber", [cell("hol", p, hol) for p in proxies]))
        rows.append(("hol: proxy peak RSS MB", [cell("hol", p, lambda ms: med([m.get("rss_mb") for m in ms], "%.1f"))
                                                for p in proxies]))
    nreps = max((len(v[1]) for v in data.values()), default=0)
    print("Medians of %d rep(s), (min–max); `-` = not run." % nreps)
    print()
    print("| figure | " + " | ".join(proxies) + " |")
    print("|---|" + "---|" * len(proxies))
    for name, cells in rows:
        print("| %s | %s |" % (name, " | ".join(cells)))

    # Full table: every scenario and proxy.
    print()
    print("| scenario | proxy | N/pub | reps | delivered msg/s (agg) | MB/s | lost median (max) | wall s "
          "| proxy CPU s | proxy peak RSS MB | lat p50 µs | lat p99 µs | lat p99.9 µs | lat max µs |")
    print("|" + "---|" * 14)
    errors = []
    for sc in scens:
        for px in proxies:
            if (sc, px) not in data:
                continue
            n, ms = data[(sc, px)]

            def g(k):
                return [m.get(k) for m in ms]
            has_lat = sc in ("lat", "hol")
            print("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                sc, px, n, len(ms), med(g("agg_rate")), med(g("agg_MBps"), "%.1f"), lost_s(ms),
                med(g("wall_s"), "%.2f"), med(g("cpu_s"), "%.2f"), med(g("rss_mb"), "%.1f"),
                *(med(g("lat_" + q)) if has_lat else "-" for q in ("p50", "p99", "p999", "max"))))
            errors += ["%s/%s/%s: %s" % (sc, px, m["rep"], m["error"]) for m in ms if "error" in m]
    if errors:
        print()
        print("Errors:")
        for e in errors:
            print("- " + e)


if __name__ == "__main__":
    main()
