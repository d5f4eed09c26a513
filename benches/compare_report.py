"""Turns benches/compare.sh's raw figures into benches/RESULTS.md and benches/results.png.

    python compare_report.py RAW.tsv VERSIONS.tsv MACHINE.tsv NOTES.txt HOST.tsv RESULTS.md RESULTS.png

RAW.tsv has one line per (round, app, server): req/s and latency percentiles (microseconds)
at 64 and at 1 connection, VmRSS and VmHWM (KiB, summed over the server's processes), and a
note when a wrk run was refused (non-2xx responses or socket errors). Medians are over the
rounds that were not refused. NOTES.txt has wrk's report of every refused run; HOST.tsv has
(app, server, line) for each line our host or extension printed beyond its routine start-up
and shutdown lines.
"""
import csv
import os
import statistics
import sys

raw_file, versions_file, machine_file, notes_file, host_file, md_file, png_file = sys.argv[1:8]

APPS = [
    ("hello", "hello app: `examples/hello/hello.py`, GET /hello, 13-byte body `Hello, World!`"),
    ("flask", "Flask app: `benches/apps/flask_json.py`, GET /json, `{\"message\":\"Hello, World!\"}`"),
]
GROUP = {"ours": "ours", "rustext": "ceiling", "nginx": "ceiling"}  # the rest: Python peer
GROUP_ORDER = {"ours": 0, "peer": 1, "ceiling": 2}
COLOURS = {"ours": "#1f77b4", "peer": "#ff7f0e", "ceiling": "#7f7f7f"}


def group(kind):
    return GROUP.get(kind, "peer")


def tsv(path):
    with open(path, newline="") as f:
        return dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)


rows = list(csv.DictReader(open(raw_file, newline=""), delimiter="\t"))
versions = tsv(versions_file)
machine = tsv(machine_file)
notes = open(notes_file).read().strip()
host_lines = {}
for line in open(host_file):
    app, label, text = line.rstrip("\n").split("\t", 2)
    host_lines[(app, label, text)] = host_lines.get((app, label, text), 0) + 1
rounds = int(machine["rounds"])


def num(v):
    return float(v) if v not in ("", None) else None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def lat(us):
    if us is None:
        return "–"
    if us < 1000:
        return "%.0f µs" % us
    if us < 100000:
        return "%.2f ms" % (us / 1000)
    return "%.0f ms" % (us / 1000)


def rate(v):
    return "refused" if v is None else "{:,.0f}".format(v).replace(",", " ")


# Per app, per server (in the order the script ran them): the medians.
summary = {}
for app, _ in APPS:
    servers = []
    for r in rows:
        if r["app"] == app and r["label"] not in [s["label"] for s in servers]:
            servers.append({"label": r["label"], "kind": r["kind"]})
    for s in servers:
        mine = [r for r in rows if r["app"] == app and r["label"] == s["label"]]
        s["rounds"] = [num(r["rps64"]) for r in sorted(mine, key=lambda r: int(r["round"]))]
        s["other"] = [num(r["other_cpu"]) for r in sorted(mine, key=lambda r: int(r["round"]))]
        s["refused"] = sum(1 for r in mine if r["note"].strip())
        for key in ("rps64", "p50_64", "p99_64", "rps1", "p50_1", "p99_1", "rss", "hwm", "procs"):
            s[key] = med([num(r[key]) for r in mine])
        s["group"] = group(s["kind"])
    servers.sort(key=lambda s: GROUP_ORDER[s["group"]])  # stable: list order within a group
    peers = [s for s in servers if s["group"] == "peer" and s["rps64"] is not None]
    best_peer = max(peers, key=lambda s: s["rps64"]) if peers else None
    ours = [s for s in servers if s["group"] == "ours" and s["rps64"] is not None]
    best_ours = max(ours, key=lambda s: s["rps64"]) if ours else None
    summary[app] = (servers, best_peer, best_ours)

out = []
w = out.append
w("# isapi-host + isapi_wsgi next to Python WSGI servers")
w("")
w("Written by `benches/compare.sh` (the header of that script says what it measures and how).")
w("**How to read it:** a 2-core machine shared with other builds, with wrk on the same cores as")
w("the server: absolute figures move by ±30% from run to run; the ratios within one run hold")
w("better (same client, rounds interleaved, medians). *ratio* = median req/s ÷ the best Python")
w("peer's median req/s for the same app.")
w("")
w("| | |")
w("|---|---|")
w("| date | %s |" % machine["date"])
w("| machine | %s, %s RAM; %s |" % (machine["cpu"], machine["memory"], machine["os"]))
w("| load average (1, 5, 15 min) | %s |" % machine["load"])
w("| command | `%s` |" % machine["command"].replace("|", "\\|"))
w("| each wrk run | `wrk -t2 -c64 -d%ss --latency URL` (req/s, latency at 64 connections), then "
  "`wrk -t1 -c1 -d%ss --latency URL` (latency at 1 connection), after a 1 s warm-up; "
  "%d interleaved rounds, medians |" % (machine["duration"], machine["duration"], rounds))
w("")
w("Versions:")
w("")
w("| | |")
w("|---|---|")
for k, v in versions.items():
    w("| %s | %s |" % (k, v.replace("|", "\\|")))
w("")

for app, title in APPS:
    servers, best_peer, best_ours = summary[app]
    if not servers:
        continue
    w("## %s" % title)
    w("")
    if best_peer and best_ours:
        w("Best isapi-host configuration: **%s**, %s req/s = **%.2f ×** the best Python peer (%s, %s req/s)."
          % (best_ours["label"], rate(best_ours["rps64"]), best_ours["rps64"] / best_peer["rps64"],
             best_peer["label"], rate(best_peer["rps64"])))
        w("")
    w("| server | req/s (median, 64 conn.) | ratio | p50 / p99, 64 conn. | p50 / p99, 1 conn. | RSS / peak (MiB, processes) |")
    w("|---|---:|---:|---|---|---|")
    for s in servers:
        label = s["label"]
        if s is best_ours or s is best_peer:
            label = "**%s**" % label
        ratio = "%.2f" % (s["rps64"] / best_peer["rps64"]) if (best_peer and s["rps64"]) else "–"
        refused = " (%d of %d rounds refused)" % (s["refused"], rounds) if s["refused"] else ""
        mem = "%.1f / %.1f (%d)" % (s["rss"] / 1024, s["hwm"] / 1024, s["procs"]) if s["rss"] else "–"
        w("| %s | %s%s | %s | %s / %s | %s / %s | %s |" % (
            label, rate(s["rps64"]), refused, ratio, lat(s["p50_64"]), lat(s["p99_64"]),
            lat(s["p50_1"]), lat(s["p99_1"]), mem))
    w("")

w("![median req/s at 64 connections, per server and app](results.png)")
w("")
w("### Every round (req/s at 64 connections)")
w("")
w("In brackets: how busy the machine was with other work (%% of all %s cores) in the pauses just" % machine["cpu"].split()[0])
w("before the measured runs, when nothing of this benchmark ran. Rounds with much other work are")
w("the ones the medians are there to discount.")
w("")
w("| app | server | " + " | ".join("round %d" % (i + 1) for i in range(rounds)) + " |")
w("|---|---|" + "---:|" * rounds)
for app, _ in APPS:
    for s in summary[app][0]:
        w("| %s | %s | %s |" % (app, s["label"], " | ".join(
            "%s (%s%%)" % (rate(v), "?" if o is None else "%.0f" % o) for v, o in zip(s["rounds"], s["other"]))))
w("")
w("### Notes from the run")
w("")
if notes:
    w("Refused wrk runs (wrk's report):")
    w("")
    w("```")
    w(notes)
    w("```")
else:
    w("No wrk run was refused: no non-2xx response and no socket error in any run.")
w("")
if host_lines:
    w("What our host and extension printed beyond their start-up and shutdown lines, over all rounds")
    w("(timestamps cut). `the client is gone` is a response still being written when wrk")
    w("stopped and closed its connections at the end of a run (the warm-up or a measured run):")
    w("")
    w("| app | server | times | line |")
    w("|---|---|---:|---|")
    for (app, label, text), count in host_lines.items():
        w("| %s | %s | %d | `%s` |" % (app, label, count, text.replace("|", "\\|")))
else:
    w("Our host and extension printed nothing beyond their start-up and shutdown lines.")
w("")
with open(md_file, "w") as f:
    f.write("\n".join(out))

# The chart: one panel per app, a bar per server (median), whiskers from the lowest to the
# highest round.
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

panels = [(app, title) for app, title in APPS if summary[app][0]]
heights = [len(summary[app][0]) for app, _ in panels]
fig, axes = plt.subplots(len(panels), 1, figsize=(10, 0.42 * sum(heights) + 1.6 * len(panels)),
                         gridspec_kw={"height_ratios": heights}, squeeze=False)
for ax, (app, title) in zip(axes[:, 0], panels):
    servers, best_peer, _ = summary[app]
    servers = list(reversed(servers))
    ys = range(len(servers))
    values = [s["rps64"] or 0 for s in servers]
    lows = [v - min([r for r in s["rounds"] if r is not None], default=v) for v, s in zip(values, servers)]
    highs = [max([r for r in s["rounds"] if r is not None], default=v) - v for v, s in zip(values, servers)]
    ax.barh(ys, values, color=[COLOURS[s["group"]] for s in servers],
            xerr=[lows, highs], error_kw={"ecolor": "black", "capsize": 2, "lw": 0.8})
    ax.set_yticks(list(ys))
    ax.set_yticklabels([s["label"] for s in servers], fontsize=8)
    top = max(values + [1])
    for y, v, hi, s in zip(ys, values, highs, servers):
        text = rate(s["rps64"])
        if best_peer and s["rps64"]:
            text += "  (%.2f×)" % (s["rps64"] / best_peer["rps64"])
        ax.text(v + hi + top * 0.015, y, text, va="center", fontsize=7)
    ax.set_xlim(0, top * 1.35)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: "{:,.0f}".format(x).replace(",", " ")))
    ax.set_title(title.replace("`", ""), fontsize=9)
    ax.set_xlabel("requests/s, median of %d rounds (wrk -t2 -c64); whiskers: lowest and highest round; "
                  "(×): ratio to the best Python peer" % rounds, fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", lw=0.3)
fig.legend(handles=[Patch(color=COLOURS[g], label=l) for g, l in
                    (("ours", "isapi-host + isapi_wsgi"), ("peer", "Python peers"),
                     ("ceiling", "no Python (ceilings)"))],
           fontsize=7, loc="upper right", ncol=3, frameon=False)
fig.suptitle("%s; %s" % (machine["cpu"], machine["date"]), fontsize=8, x=0.01, ha="left")
fig.tight_layout(rect=(0, 0, 1, 0.97))
fig.savefig(png_file, dpi=110)
print("wrote %s and %s" % (os.path.relpath(md_file), os.path.relpath(png_file)))
