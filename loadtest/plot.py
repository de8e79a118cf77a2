#!/usr/bin/env python3
"""Scaling curves from measured figures, as an SVG and a Markdown table.

Standard library only. Reads:

* criterion's estimates for the router (`target/criterion/<group>/<contender>/<n>/new/estimates.json`,
  mean per operation), for every fleet size found: `nearest_available_k5` and `position_update`,
  ours and the baselines that were run;
* optionally (`--percentiles LOG`), the bench's own "latency percentiles" lines (single operations
  timed one by one: p50 is far less sensitive to a busy machine than criterion's mean);
* the websocket fan-out table of BENCHMARKS.md (section "Push gateway", rows `| gateway | N | ...`
  and `| fastws | N | ...`): clients, frames/s delivered, p99.

Writes `docs/scaling-curves.svg` and prints the tables (Markdown) on stdout.

    python3 loadtest/plot.py [--criterion target/criterion] [--benchmarks BENCHMARKS.md] \
        [--out docs/scaling-curves.svg]

With `--e2e DIR` instead: the end-to-end curves from the JSON reports `loadtest --report` wrote
there (`loadtest/scaling.sh --rate` / `--units`): `rate-<pings/s>-c<clients>.json` and
`units-<n>-r<pings/s>.json` (rate 0 = capacity). Writes `docs/scaling-event-rate.svg` (throughput
and latency against the offered rate) and `docs/scaling-fleet.svg` (throughput, latency and
memory against the fleet size), and prints their tables.

    python3 loadtest/plot.py --e2e target/scaling-e2e [--e2e-out docs/scaling-event-rate.svg] \
        [--e2e-fleet-out docs/scaling-fleet.svg]
"""

import argparse
import json
import math
import os
import re
import sys

ROUTER_SERIES = [
    # (group, contender, label, colour, dashed)
    ("nearest_available_k5", "ours", "nearest k=5, ours (rstar per kind)", "#c0392b", False),
    ("nearest_available_k5", "rstar_one_tree", "nearest k=5, rstar one tree", "#e67e22", True),
    ("nearest_available_k5", "kiddo_per_kind", "nearest k=5, kiddo per kind", "#8e44ad", True),
    ("position_update", "ours", "position update, ours", "#2471a3", False),
]


def read_router(criterion_dir):
    """{(group, contender): {n: mean_ns}} for every size criterion has."""
    out = {}
    for group, contender, *_ in ROUTER_SERIES:
        base = os.path.join(criterion_dir, group, contender)
        if not os.path.isdir(base):
            continue
        for n in os.listdir(base):
            est = os.path.join(base, n, "new", "estimates.json")
            if n.isdigit() and os.path.exists(est):
                with open(est) as f:
                    mean_ns = json.load(f)["mean"]["point_estimate"]
                out.setdefault((group, contender), {})[int(n)] = mean_ns
    return out


def read_percentiles(log):
    """{(name, n): (p50_us, p99_us)} from lines like
    `nearest_available_k5/ours/1000     p50   0.63 µs  p99   1.15 µs  p99.9   1.91 µs`."""
    out = {}
    if not log or not os.path.exists(log):
        return out
    with open(log, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"(\S+)/(\d+)\s+p50\s+([\d.]+) µs\s+p99\s+([\d.]+) µs", line)
            if m:
                out[(m[1], int(m[2]))] = (float(m[3]), float(m[4]))
    return out


def read_ws(benchmarks_md):
    """[(server, clients, frames_per_s, p50_ms, p99_ms, rss_per_client)] from the gateway table."""
    rows = []
    with open(benchmarks_md) as f:
        for line in f:
            m = re.match(
                r"\|\s*(gateway|fastws)\s*\|\s*(\d+)\s*\|\s*\d+\s*\|\s*(\d+)\s*\|\s*[\d.]+\s*\|"
                r"\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*[\d.]+\s*\|\s*\d+\s*\|\s*([\d.]+ KiB)\s*\|",
                line,
            )
            if m:
                rows.append(
                    (m[1], int(m[2]), int(m[3]), float(m[4]), float(m[5]), m[6])
                )
    return rows


def fmt_us(ns):
    return f"{ns / 1000:.2f} µs"


def fmt_n(n):
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


class Panel:
    """One log-x (or linear-x) and optionally log-y chart in an SVG group."""

    def __init__(self, x0, y0, w, h, xs, ys, title, xlabel, ylabel, logy=False, logx=True,
                 legend_below=False):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        # The legend inside the chart's top left corner, or under the x-axis label.
        self.legend_y0 = y0 + h + 66 if legend_below else y0 + 16
        self.logx = logx
        if logx:
            self.xmin, self.xmax = min(xs) / 1.5, max(xs) * 1.5
        else:
            self.xmin, self.xmax = min(xs), max(xs)
        lo, hi = min(ys), max(ys)
        if logy:
            self.ymin, self.ymax = lo / 2, hi * 2
        else:
            self.ymin, self.ymax = 0, hi * 1.15
        self.logy = logy
        self.parts = [
            f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>',
            f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>',
            f'<text x="{x0 + w / 2}" y="{y0 + h + 38}" text-anchor="middle" font-size="12">{xlabel}</text>',
            f'<text transform="translate({x0 - 52},{y0 + h / 2}) rotate(-90)" text-anchor="middle" font-size="12">{ylabel}</text>',
        ]

    def px(self, x):
        if not self.logx:
            return self.x0 + (x - self.xmin) / ((self.xmax - self.xmin) or 1) * self.w
        f = (math.log10(x) - math.log10(self.xmin)) / (math.log10(self.xmax) - math.log10(self.xmin))
        return self.x0 + f * self.w

    def py(self, y):
        if self.logy:
            f = (math.log10(y) - math.log10(self.ymin)) / (math.log10(self.ymax) - math.log10(self.ymin))
        else:
            f = (y - self.ymin) / (self.ymax - self.ymin)
        return self.y0 + self.h - f * self.h

    def xticks(self, ticks, fmt=None):
        fmt = fmt or fmt_n
        for t in ticks:
            x = self.px(t)
            self.parts.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + self.h}" stroke="#ddd"/>')
            self.parts.append(
                f'<text x="{x:.1f}" y="{self.y0 + self.h + 18}" text-anchor="middle" font-size="11">{fmt(t)}</text>'
            )

    def yticks(self, ticks, fmt):
        for t in ticks:
            if not (self.ymin <= t <= self.ymax):
                continue
            y = self.py(t)
            self.parts.append(f'<line x1="{self.x0}" y1="{y:.1f}" x2="{self.x0 + self.w}" y2="{y:.1f}" stroke="#ddd"/>')
            self.parts.append(
                f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{fmt(t)}</text>'
            )

    def series(self, points, colour, dashed, label, legend_row, value_fmt, markers=True):
        pts = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in points)
        if isinstance(dashed, str):
            dash = f' stroke-dasharray="{dashed}"'
        else:
            dash = ' stroke-dasharray="6,4"' if dashed else ""
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2.2"{dash}/>')
        for x, y in points if markers else []:
            self.parts.append(f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="3.5" fill="{colour}"/>')
            if value_fmt:
                self.parts.append(
                    f'<text x="{self.px(x) + 5:.1f}" y="{self.py(y) - 6:.1f}" font-size="10" fill="{colour}">{value_fmt(y)}</text>'
                )
        ly = self.legend_y0 + 16 * legend_row
        lx = self.x0 + 10
        self.parts.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{colour}" stroke-width="2.2"{dash}/>')
        self.parts.append(f'<text x="{lx + 30}" y="{ly}" font-size="11">{label}</text>')

    def hline(self, y, colour, dash, label, legend_row):
        """A horizontal reference line across the panel, with its legend entry."""
        yy = self.py(y)
        self.parts.append(
            f'<line x1="{self.x0}" y1="{yy:.1f}" x2="{self.x0 + self.w}" y2="{yy:.1f}" stroke="{colour}" '
            f'stroke-width="1.6" stroke-dasharray="{dash}"/>'
        )
        ly = self.legend_y0 + 16 * legend_row
        lx = self.x0 + 10
        self.parts.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{colour}" stroke-width="1.6" '
            f'stroke-dasharray="{dash}"/>'
        )
        self.parts.append(f'<text x="{lx + 30}" y="{ly}" font-size="11">{label}</text>')

    def svg(self):
        return "\n".join(self.parts)


# ---------------------------------------------------------------------------------------------
# End to end: loadtest JSON reports.


def read_e2e(d):
    """{"rate": [report...], "units": [report...]} from `rate-*.json` and `units-*.json` in d."""
    out = {"rate": [], "units": []}
    if not os.path.isdir(d):
        return out
    for name in sorted(os.listdir(d)):
        m = re.match(r"(rate|units)-\d+-[\w-]+\.json$", name)
        if not m:
            continue
        with open(os.path.join(d, name)) as f:
            r = json.load(f)
        r["_file"] = name
        out[m[1]].append(r)
    return out


def fmt_rate(x):
    if x is None:
        return "–"
    return f"{x / 1000:.1f}k/s" if x >= 1000 else f"{x:.0f}/s"


def fmt_int(x):
    return "–" if x is None else f"{x:,}"


def fmt_load(r):
    a, b = r.get("loadavg_start"), r.get("loadavg_end")
    return f"{a[0]:.2f} → {b[0]:.2f}" if a and b else "–"


def proc_rate(r):
    """The processor's rate: every ping handled, or (when the broker dropped some before the
    processor read them) the pings it did handle over the time to the last one."""
    return r.get("processor_only_per_s") or r.get("processor_handled_per_s")


def fmt_proc(r):
    dropped = r["pings_produced"] - (r.get("processor_handled") or r["pings_produced"])
    note = f" ({dropped:,} dropped by the broker)" if dropped > 0 else ""
    return fmt_rate(proc_rate(r)) + note


def median_by(points):
    """[(x, y)] with repeated x (repeated runs) -> [(x, median y)], sorted by x."""
    by = {}
    for x, y in points:
        by.setdefault(x, []).append(y)
    return [(x, sorted(ys)[len(ys) // 2]) for x, ys in sorted(by.items())]


def rss_max(r):
    procs = (r.get("memory") or {}).get("processes") or []
    return procs[0].get("max_mib") if procs else None


def lost(r):
    """Frames expected but not delivered, as a Markdown note."""
    miss = r["frames_expected"] - r["frames_delivered"]
    return "" if miss <= 0 else f" ({miss:,} missing)"


def e2e_svg(path, panels, width, height, footer):
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    parts += [p.svg() for p in panels]
    parts.append(
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="11" fill="#555">{footer}</text>'
    )
    parts.append("</svg>")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")
    print(f"wrote {path}", file=sys.stderr)


MEM_COLOURS = ["#c0392b", "#2471a3", "#27ae60", "#8e44ad", "#e67e22", "#7f8c8d"]


def memory_plot(paths, out):
    """RSS over the run of each watched process of each report, and the frames not yet delivered."""
    runs = []
    for arg in paths:
        # LABEL=PATH, or PATH (labelled by its file name).
        label, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
        with open(path) as f:
            r = json.load(f)
        runs.append((label or os.path.basename(path).removesuffix(".json"), r))
    series, ts, ys = [], [], []
    for tag, r in runs:
        for p in r["memory"]["processes"]:
            pts = [(t / 60, kib / 1024) for t, kib in p["samples"]]
            if pts:
                series.append((tag, f"{tag}: {p['process']}", pts, p.get("slope_mib_per_10min")))
                ts += [x for x, _ in pts]
                ys += [y for _, y in pts]
    if not series:
        sys.exit("no memory samples in the reports")
    warm = max(r["memory"]["warmup_s"] for _, r in runs) / 60
    p1 = Panel(90, 50, 760, 360, ts, ys, "Resident memory (VmRSS) while the load runs; slope after warm-up",
               "minutes of load", "MiB", logx=False)
    span = max(ts)
    step = 5 if span > 15 else 1
    p1.xticks([m for m in range(0, int(span) + 1, step)], lambda t: f"{t:g}")
    top = max(ys) * 1.15
    p1.yticks([v for v in range(0, int(top) + 1, 25 if top < 300 else 100)], lambda t: f"{t:g}")
    p1.series([(warm, 0.1), (warm, top * 0.98)], "#999", "2,3", f"end of warm-up ({warm:g} min)", 0, None,
              markers=False)
    run_colour = {}
    for i, (tag, label, pts, slope) in enumerate(series):
        colour = MEM_COLOURS[i % len(MEM_COLOURS)]
        run_colour.setdefault(tag, colour)
        note = "" if slope is None else f": {slope:+.1f} MiB / 10 min"
        p1.series(pts, colour, False, f"{label}{note}", i + 1, None, markers=False)
    panels = [p1]
    back = []
    for tag, r in runs:
        prog = r["memory"].get("progress") or []
        pts = [(t / 60, max(0, sent * r["clients"] - got) / r["clients"]) for t, sent, got in prog]
        if pts:
            back.append((tag, pts))
    if back:
        allp = [p for _, pts in back for p in pts]
        p2 = Panel(960, 50, 340, 360, [x for x, _ in allp], [y for _, y in allp] + [1],
                   "Backlog at each sample", "minutes of load", "pings produced, not yet on the screens",
                   logx=False)
        p2.xticks([m for m in range(0, int(span) + 1, step)], lambda t: f"{t:g}")
        hi = max(y for _, y in allp) * 1.15
        tick = 10 ** max(0, int(math.log10(max(hi, 1))))
        p2.yticks([v * tick for v in range(0, int(hi / tick) + 2)], lambda t: f"{t:,.0f}")
        for i, (tag, pts) in enumerate(back):
            p2.series(pts, run_colour.get(tag, "#444"), False, tag, i, None, markers=False)
        panels.append(p2)
    e2e_svg(out, panels, 1340 if back else 900, 480,
            "loadtest at 5k pings/s, 1,000 units, 10 websocket clients; VmRSS every "
            f"{runs[0][1]['memory']['interval_s']} s (BENCHMARKS.md). Generated by loadtest/plot.py.")


CLIENT_COLOURS = ["#c0392b", "#2471a3", "#27ae60", "#8e44ad"]
LAT_TICKS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
RATE_TICKS = [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6]


def e2e_rate(reports, out):
    fixed = [r for r in reports if r["rate_target"] > 0]
    cap = [r for r in reports if r["rate_target"] == 0]
    clients = sorted({r["clients"] for r in reports})
    if fixed:
        rates = sorted({r["rate_target"] for r in fixed})
        thr = [v for r in reports for v in (proc_rate(r), r["processed_per_s"],
                                            r["bare_consume_per_s"]) if v]
        p1 = Panel(90, 50, 460, 360, rates, thr + rates, "Throughput against the offered rate",
                   "offered position pings/s (log)", "pings/s (log)", logy=True, legend_below=True)
        p1.xticks(rates)
        p1.yticks(RATE_TICKS, fmt_n)
        row = 0
        p1.series([(x, x) for x in rates], "#bbb", "2,3", "offered", row, None)
        row += 1
        for i, c in enumerate(clients):
            colour = CLIENT_COLOURS[i % len(CLIENT_COLOURS)]
            rs = sorted((r for r in fixed if r["clients"] == c), key=lambda r: r["rate_target"])
            pts = [(r["rate_target"], proc_rate(r)) for r in rs if proc_rate(r)]
            if pts:
                p1.series(pts, colour, False, f"processor, {c} client(s)", row, None)
                row += 1
            pts = [(r["rate_target"], r["processed_per_s"]) for r in rs if r["processed_per_s"]]
            p1.series(pts, colour, "1,3", f"end to end (to the last frame), {c} client(s)", row, None)
            row += 1
            caps = sorted(proc_rate(r) for r in cap if r["clients"] == c and proc_rate(r))
            if caps:
                med = caps[len(caps) // 2]
                runs = f", median of {len(caps)} runs" if len(caps) > 1 else ""
                p1.hline(med, colour, "8,3,2,3", f"capacity (--rate 0), {c} client(s){runs}: {fmt_rate(med)}", row)
                row += 1
        # Bare consume of the capacity runs only: a short run at a low rate has too few pings
        # for the consumer to reach its speed.
        bare = sorted(r["bare_consume_per_s"] for r in cap)
        if bare:
            med = bare[len(bare) // 2]
            p1.hline(med, "#7f8c8d", "10,4", f"bare consume (capacity runs): {fmt_rate(med)}", row)
            row += 1
        # Bare relay (consume, decode, produce one event per ping, read it back): the Kafka work
        # the contract asks for; reports from before it was measured have none.
        relay = sorted(r["bare_relay_per_s"] for r in cap if r.get("bare_relay_per_s"))
        if relay:
            med = relay[len(relay) // 2]
            p1.hline(med, "#8e44ad", "4,4", f"bare relay (capacity runs): {fmt_rate(med)}", row)

        lats = [r["latency_ms"][q] for r in fixed if r["frames_delivered"] for q in ("p50", "p99", "p999")]
        p2 = Panel(680, 50, 460, 360, rates, lats + [25, 100], "Produce → websocket latency",
                   "offered position pings/s (log)", "ms (log)", logy=True, legend_below=True)
        p2.xticks(rates)
        p2.yticks(LAT_TICKS, lambda t: f"{t:g}")
        row = 0
        for i, c in enumerate(clients):
            colour = CLIENT_COLOURS[i % len(CLIENT_COLOURS)]
            rs = sorted((r for r in fixed if r["clients"] == c), key=lambda r: r["rate_target"])
            for q, dash, label in [("p50", "2,3", "p50"), ("p99", False, "p99"), ("p999", "6,4", "p99.9")]:
                pts = [(r["rate_target"], r["latency_ms"][q]) for r in rs if r["frames_delivered"]]
                p2.series(pts, colour, dash, f"{label}, {c} client(s)", row,
                          (lambda y: f"{y:g}") if q == "p99" else None)
                row += 1
        p2.hline(25, "#e67e22", "3,3", "target p99 ≤ 25 ms (city load)", row)
        p2.hline(100, "#8e44ad", "3,3", "target p99 ≤ 100 ms (100k/s)", row + 1)
        e2e_svg(out, [p1, p2], 1200, 640,
                "loadtest --embedded: broker, processor, gateway and clients in one process on a shared "
                "2-core machine (BENCHMARKS.md). Generated by loadtest/plot.py.")

    print("| clients | offered | pings | processor | end to end | frames delivered / expected "
          "| p50 | p90 | p99 | p99.9 | max | max consumer lag | bare consume | processor ÷ bare "
          "| load avg (1 min) start → end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(reports, key=lambda r: (r["clients"], r["rate_target"] == 0, r["rate_target"])):
        lat = r["latency_ms"]
        ratio = r.get("processor_only_vs_bare")
        offered = "capacity" if r["rate_target"] == 0 else f"{r['rate_target']:,}/s"
        print(
            f"| {r['clients']} | {offered} | {r['pings_produced']:,} | {fmt_proc(r)} "
            f"| {fmt_rate(r['processed_per_s'])} | {r['frames_delivered']:,} / {r['frames_expected']:,}{lost(r)} "
            f"| {lat['p50']} ms | {lat['p90']} ms | {lat['p99']} ms | {lat['p999']} ms | {lat['max']} ms "
            f"| {fmt_int(r.get('consumer_lag_max'))} | {fmt_rate(r['bare_consume_per_s'])} "
            f"| {'–' if ratio is None else f'{ratio:.2f}'} | {fmt_load(r)} |"
        )


def e2e_fleet(reports, out):
    if not reports:
        return
    fixed = sorted((r for r in reports if r["rate_target"] > 0), key=lambda r: r["units"])
    cap = sorted((r for r in reports if r["rate_target"] == 0), key=lambda r: r["units"])
    units = sorted({r["units"] for r in reports})
    thr = [v for r in reports for v in (proc_rate(r), r["bare_consume_per_s"]) if v]
    p1 = Panel(90, 50, 380, 360, units, thr, "Throughput against the fleet size",
               "units in the fleet (log)", "pings/s (log)", logy=True)
    p1.xticks(units)
    p1.yticks(RATE_TICKS, fmt_n)
    row = 0
    for rs, colour, dash, label in [
        (cap, "#c0392b", False, "processor, capacity (--rate 0; median of runs)"),
        (cap, "#7f8c8d", "6,4", "bare consume (same runs; median)"),
        (fixed, "#2471a3", False, "processor at the offered rate"),
    ]:
        key = "bare_consume_per_s" if label.startswith("bare") else "processor"
        pts = [(r["units"], r[key] if key != "processor" else proc_rate(r)) for r in rs]
        pts = median_by([p for p in pts if p[1]])
        if pts:
            p1.series(pts, colour, dash, label, row, (lambda y: fmt_rate(y)) if key != "bare_consume_per_s" else None)
            row += 1
    panels = [p1]
    if any(r["frames_delivered"] for r in fixed):
        rate = fixed[0]["rate_target"]
        lats = [r["latency_ms"][q] for r in fixed if r["frames_delivered"] for q in ("p50", "p99", "p999")]
        p2 = Panel(570, 50, 380, 360, units, lats, f"Latency at {rate // 1000}k pings/s",
                   "units in the fleet (log)", "produce → websocket, ms (log)", logy=True)
        p2.xticks(units)
        p2.yticks(LAT_TICKS, lambda t: f"{t:g}")
        for i, (q, dash, label) in enumerate([("p50", "2,3", "p50"), ("p99", False, "p99"), ("p999", "6,4", "p99.9")]):
            pts = [(r["units"], r["latency_ms"][q]) for r in fixed if r["frames_delivered"]]
            p2.series(pts, "#2471a3", dash, label, i, (lambda y: f"{y:g}") if q == "p99" else None)
        panels.append(p2)
    mem = [(r["units"], rss_max(r)) for r in (fixed or cap) if rss_max(r)]
    if mem:
        p3 = Panel(1050, 50, 380, 360, [m[0] for m in mem], [m[1] for m in mem],
                   "Memory: max RSS of the whole process", "units in the fleet (log)",
                   "MiB (log)", logy=True)
        p3.xticks([m[0] for m in mem])
        p3.yticks([20, 50, 100, 200, 500, 1000, 2000, 5000, 10000], lambda t: f"{t:g}")
        p3.series(mem, "#27ae60", False, "broker + system + clients", 0, lambda y: f"{y:.0f}")
        panels.append(p3)
    e2e_svg(out, panels, 1480, 480,
            "loadtest --embedded, one process on a shared 2-core machine; pings cycle over the fleet "
            "(BENCHMARKS.md). Generated by loadtest/plot.py.")
    print()
    print("| units | offered | pings | registration / snapshot | processor | frames delivered / expected "
          "| p50 | p99 | p99.9 | max | bare consume | processor ÷ bare | max RSS | load avg (1 min) start → end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(reports, key=lambda r: (r["units"], r["rate_target"] == 0)):
        lat = r["latency_ms"]
        ratio = r.get("processor_only_vs_bare")
        offered = "capacity" if r["rate_target"] == 0 else f"{r['rate_target']:,}/s"
        rss = rss_max(r)
        print(
            f"| {r['units']:,} | {offered} | {r['pings_produced']:,} | {r.get('register_s', 0):.1f} s / {r.get('snapshot_wait_s', 0):.1f} s "
            f"| {fmt_proc(r)} | {r['frames_delivered']:,} / {r['frames_expected']:,}{lost(r)} "
            f"| {lat['p50']} ms | {lat['p99']} ms | {lat['p999']} ms | {lat['max']} ms "
            f"| {fmt_rate(r['bare_consume_per_s'])} | {'–' if ratio is None else f'{ratio:.2f}'} "
            f"| {'–' if rss is None else f'{rss:,.0f} MiB'} | {fmt_load(r)} |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--benchmarks", default="BENCHMARKS.md")
    ap.add_argument("--out", default="docs/scaling-curves.svg")
    ap.add_argument("--percentiles", default=None, help="the router bench's output (stdout)")
    ap.add_argument("--e2e", default=None, help="directory of loadtest JSON reports (scaling.sh --rate/--units)")
    ap.add_argument("--e2e-out", default="docs/scaling-event-rate.svg")
    ap.add_argument("--e2e-fleet-out", default="docs/scaling-fleet.svg")
    ap.add_argument("--memory", nargs="+", default=None, help="loadtest JSON reports with memory samples")
    ap.add_argument("--memory-out", default="docs/memory-5k-30min.svg")
    args = ap.parse_args()

    if args.memory:
        memory_plot(args.memory, args.memory_out)
        return

    if args.e2e:
        e2e = read_e2e(args.e2e)
        if not e2e["rate"] and not e2e["units"]:
            sys.exit(f"no rate-*.json or units-*.json reports under {args.e2e}")
        if e2e["rate"]:
            e2e_rate(e2e["rate"], args.e2e_out)
        if e2e["units"]:
            e2e_fleet(e2e["units"], args.e2e_fleet_out)
        return

    router = read_router(args.criterion)
    pct = read_percentiles(args.percentiles)
    ws = read_ws(args.benchmarks)
    if not router:
        sys.exit(f"no criterion estimates under {args.criterion}: run the router bench first")

    width, height = 1100, 470
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="DejaVu Sans, Arial, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]

    # Panel 1: router time per operation against fleet size.
    all_n = sorted({n for s in router.values() for n in s})
    all_t = [t / 1000 for s in router.values() for t in s.values()] + [v[0] for v in pct.values()]
    p1 = Panel(90, 50, 420, 340, all_n, all_t, "Router: mean time per operation",
               "units in the fleet (log)", "µs per operation (log)", logy=True)
    p1.xticks(all_n)
    p1.yticks([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50], lambda t: f"{t:g}")
    row = 0
    for group, contender, label, colour, dashed in ROUTER_SERIES:
        s = router.get((group, contender))
        if not s:
            continue
        pts = [(n, s[n] / 1000) for n in sorted(s)]
        p1.series(pts, colour, dashed, label, row, (lambda y: f"{y:.2f}") if contender == "ours" else None)
        row += 1
    for name, label, colour in [
        ("nearest_available_k5/ours", "nearest k=5, ours: p50 of single queries", "#f1948a"),
        ("position_update/ours", "position update, ours: p50 of single updates", "#85c1e9"),
    ]:
        pts = sorted((n, v[0]) for (k, n), v in pct.items() if k == name)
        if pts:
            p1.series(pts, colour, True, label, row, None)
            row += 1
    parts.append(p1.svg())

    # Panel 2: websocket fan-out against clients (gateway and baseline).
    if ws:
        clients = sorted({r[1] for r in ws})
        p99 = [r[4] for r in ws]
        p2 = Panel(640, 50, 420, 340, clients, p99, "Gateway fan-out at 200k frames/s: p99 latency",
                   "websocket clients (log)", "p99 publish → receive (ms, log)", logy=True)
        p2.xticks(clients)
        p2.yticks([10, 20, 50, 100, 200, 500, 1000, 2000, 5000], lambda t: f"{t:g}")
        for i, (server, colour, dashed, label) in enumerate(
            [("gateway", "#27ae60", False, "gateway (ours)"), ("fastws", "#7f8c8d", True, "bare fastwebsockets")]
        ):
            pts = [(r[1], r[4]) for r in sorted(ws, key=lambda r: r[1]) if r[0] == server]
            if pts:
                p2.series(pts, colour, dashed, label, i, lambda y: f"{y:.0f}")
        parts.append(p2.svg())

    parts.append(
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="11" fill="#555">'
        "2-core shared machine; router: criterion --quick means; gateway: wsbench, clients on the same 2 cores "
        "(BENCHMARKS.md). Generated by loadtest/plot.py.</text>"
    )
    parts.append("</svg>")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(parts) + "\n")

    # Tables.
    print(
        "| units | nearest k=5, ours | nearest k=5, rstar one tree | nearest k=5, kiddo per kind "
        "| position update, ours | nearest, ours: p50 / p99 single | update, ours: p50 / p99 single |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in all_n:
        cells = []
        for group, contender, *_ in ROUTER_SERIES:
            v = router.get((group, contender), {}).get(n)
            cells.append(fmt_us(v) if v is not None else "–")
        for name in ("nearest_available_k5/ours", "position_update/ours"):
            v = pct.get((name, n))
            cells.append(f"{v[0]:.2f} / {v[1]:.2f} µs" if v else "–")
        print(f"| {n:,} | " + " | ".join(cells) + " |")
    if ws:
        print()
        print("| server | websocket clients | frames/s delivered | p50 | p99 | server RSS per client |")
        print("|---|---|---|---|---|---|")
        for server, n, fps, p50, p99v, rss in sorted(ws, key=lambda r: (r[0] != "gateway", r[1])):
            print(f"| {server} | {n:,} | {fps:,} | {p50:g} ms | {p99v:g} ms | {rss} |")
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
