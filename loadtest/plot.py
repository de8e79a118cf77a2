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
    """One log-x (and optionally log-y) chart in an SVG group."""

    def __init__(self, x0, y0, w, h, xs, ys, title, xlabel, ylabel, logy=False):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xmin, self.xmax = min(xs) / 1.5, max(xs) * 1.5
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
        f = (math.log10(x) - math.log10(self.xmin)) / (math.log10(self.xmax) - math.log10(self.xmin))
        return self.x0 + f * self.w

    def py(self, y):
        if self.logy:
            f = (math.log10(y) - math.log10(self.ymin)) / (math.log10(self.ymax) - math.log10(self.ymin))
        else:
            f = (y - self.ymin) / (self.ymax - self.ymin)
        return self.y0 + self.h - f * self.h

    def xticks(self, ticks):
        for t in ticks:
            x = self.px(t)
            self.parts.append(f'<line x1="{x:.1f}" y1="{self.y0}" x2="{x:.1f}" y2="{self.y0 + self.h}" stroke="#ddd"/>')
            self.parts.append(
                f'<text x="{x:.1f}" y="{self.y0 + self.h + 18}" text-anchor="middle" font-size="11">{fmt_n(t)}</text>'
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

    def series(self, points, colour, dashed, label, legend_row, value_fmt):
        pts = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in points)
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2.2"{dash}/>')
        for x, y in points:
            self.parts.append(f'<circle cx="{self.px(x):.1f}" cy="{self.py(y):.1f}" r="3.5" fill="{colour}"/>')
            if value_fmt:
                self.parts.append(
                    f'<text x="{self.px(x) + 5:.1f}" y="{self.py(y) - 6:.1f}" font-size="10" fill="{colour}">{value_fmt(y)}</text>'
                )
        ly = self.y0 + 16 + 16 * legend_row
        lx = self.x0 + 10
        self.parts.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 24}" y2="{ly - 4}" stroke="{colour}" stroke-width="2.2"{dash}/>')
        self.parts.append(f'<text x="{lx + 30}" y="{ly}" font-size="11">{label}</text>')

    def svg(self):
        return "\n".join(self.parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--benchmarks", default="BENCHMARKS.md")
    ap.add_argument("--out", default="docs/scaling-curves.svg")
    ap.add_argument("--percentiles", default=None, help="the router bench's output (stdout)")
    args = ap.parse_args()

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
