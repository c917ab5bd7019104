"""tests/bench/workload/wl_report.py - tables and SVG plots of bench_workload results.

No plotting library: the SVG is written here (bars, lines, axes, legends).
Used by bench_workload.py; the input is the list of run records it builds.
"""

import html
import math

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#843c39", "#637939",
          "#7b4173", "#6baed6", "#fd8d3c", "#31a354"]


def _esc(s):
    return html.escape(str(s), quote=True)


class Svg:
    """Svg accumulates elements and renders a standalone SVG document."""

    def __init__(self, width, height, title):
        self.w, self.h = width, height
        self.items = [f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
                      f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" '
                      f'font-weight="bold">{_esc(title)}</text>']

    def add(self, s):
        self.items.append(s)

    def text(self, x, y, s, size=11, anchor="start", rotate=None, color="#222"):
        tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'fill="{color}"{tr}>{_esc(s)}</text>')

    def line(self, x1, y1, x2, y2, color="#999", width=1, dash=None):
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{color}" stroke-width="{width}"{d}/>')

    def rect(self, x, y, w, h, color, tip=None):
        t = f"<title>{_esc(tip)}</title>" if tip else ""
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" '
                 f'fill="{color}">{t}</rect>')

    def polyline(self, pts, color, width=2):
        p = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        self.add(f'<polyline points="{p}" fill="none" stroke="{color}" stroke-width="{width}"/>')

    def y_grid(self, left, top, pw, ph, vmax, unit, unit_x):
        """y_grid draws 6 horizontal grid lines from 0 to vmax with labels, and the unit."""
        for k in range(6):
            y = top + ph - ph * k / 5
            self.line(left, y, left + pw, y, "#e5e5e5")
            self.text(left - 6, y + 4, f"{vmax * k / 5:g}", anchor="end")
        self.text(unit_x, top + ph / 2, unit, anchor="middle", rotate=-90)

    def legend(self, x, y, names):
        for i, n in enumerate(names):
            self.rect(x, y + i * 16 - 9, 10, 10, COLORS[i % len(COLORS)])
            self.text(x + 14, y + i * 16, n, size=11)

    def render(self):
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}" font-family="sans-serif">\n'
                + "\n".join(self.items) + "\n</svg>\n")


def nice_max(v):
    """nice_max rounds v up to 1, 2 or 5 times a power of ten."""
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def bar_chart(title, groups, series, unit, width=900, height=420):
    """bar_chart: groups = category labels; series = [(name, [value per group])]."""
    svg = Svg(width, height, title)
    left, right, top, bottom = 170, 200, 40, 190
    pw, ph = width - left - right, height - top - bottom
    vmax = nice_max(max([v for _, vals in series for v in vals if v is not None] + [0]))
    svg.y_grid(left, top, pw, ph, vmax, unit, left - 50)
    gw = pw / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si, (name, vals) in enumerate(series):
            v = vals[gi]
            if v is None:
                continue
            h = ph * v / vmax
            svg.rect(x0 + si * bw, top + ph - h, bw - 2, h, COLORS[si % len(COLORS)],
                     f"{name} / {g}: {v:,.4g} {unit}")
        svg.text(left + gi * gw + gw / 2, top + ph + 14, g, anchor="end", rotate=-40, size=10)
    svg.line(left, top + ph, left + pw, top + ph, "#333")
    svg.legend(left + pw + 15, top + 10, [n for n, _ in series])
    return svg.render()


def stacked_bars(title, groups, parts, unit, width=900, height=460):
    """stacked_bars: parts = [(name, [value per group])], stacked per group."""
    svg = Svg(width, height, title)
    left, right, top, bottom = 170, 260, 40, 200
    pw, ph = width - left - right, height - top - bottom
    totals = [sum((vals[i] or 0) for _, vals in parts) for i in range(len(groups))]
    vmax = nice_max(max(totals + [0]))
    svg.y_grid(left, top, pw, ph, vmax, unit, left - 50)
    gw = pw / max(len(groups), 1)
    for gi, g in enumerate(groups):
        y = top + ph
        for si, (name, vals) in enumerate(parts):
            v = vals[gi] or 0
            h = ph * v / vmax
            svg.rect(left + gi * gw + gw * 0.15, y - h, gw * 0.7, h, COLORS[si % len(COLORS)],
                     f"{name} / {g}: {v:.3g} {unit}")
            y -= h
        svg.text(left + gi * gw + gw / 2, top + ph + 14, g, anchor="end", rotate=-40, size=10)
    svg.line(left, top + ph, left + pw, top + ph, "#333")
    svg.legend(left + pw + 15, top + 10, [n for n, _ in parts])
    return svg.render()


def percentile_plot(title, curves, width=900, height=440):
    """percentile_plot: HdrHistogram-style latency by percentile.

    curves = [(name, [[quantile, ms], ...])]; x is log10(1 / (1 - q)) so
    50%, 90%, 99%, 99.9% ... are evenly spaced; y is logarithmic in ms."""
    svg = Svg(width, height, title)
    left, right, top, bottom = 70, 260, 40, 50
    pw, ph = width - left - right, height - top - bottom

    def xv(q):
        return math.log10(1.0 / max(1.0 - q, 1e-6))

    pts_all = [(xv(q), ms) for _, c in curves for q, ms in c if q < 1.0 and ms > 0]
    if not pts_all:
        svg.text(width / 2, height / 2, "no data", anchor="middle")
        return svg.render()
    xmax = max(4.0, math.ceil(max(x for x, _ in pts_all)))
    lo = 10 ** math.floor(math.log10(min(ms for _, ms in pts_all)))
    hi = 10 ** math.ceil(math.log10(max(ms for _, ms in pts_all)))
    if hi <= lo:
        hi = lo * 10
    ly0, ly1 = math.log10(lo), math.log10(hi)

    def px(x):
        return left + pw * x / xmax

    def py(ms):
        return top + ph - ph * (math.log10(max(ms, lo)) - ly0) / (ly1 - ly0)

    e = ly0
    while e <= ly1 + 1e-9:
        y = py(10 ** e)
        svg.line(left, y, left + pw, y, "#e5e5e5")
        svg.text(left - 6, y + 4, f"{10 ** e:g}", anchor="end")
        e += 1
    for k in range(int(xmax) + 1):
        x = px(k)
        svg.line(x, top, x, top + ph, "#e5e5e5")
        label = f"{100 * (1 - 10 ** -k):.{max(k - 2, 0)}f}%" if k else "0%"
        svg.text(x, top + ph + 16, label, anchor="middle")
    svg.text(16, top + ph / 2, "latency, ms (log)", anchor="middle", rotate=-90)
    svg.text(left + pw / 2, height - 8, "percentile", anchor="middle")
    for i, (name, c) in enumerate(curves):
        pts = [(px(xv(q)), py(ms)) for q, ms in c if q < 1.0 and ms > 0]
        if pts:
            svg.polyline(pts, COLORS[i % len(COLORS)])
    svg.legend(left + pw + 15, top + 10, [n for n, _ in curves])
    return svg.render()


def time_plot(title, series, unit, width=900, height=400):
    """time_plot: series = [(name, [(t_seconds, value), ...])], linear axes."""
    svg = Svg(width, height, title)
    left, right, top, bottom = 70, 260, 40, 50
    pw, ph = width - left - right, height - top - bottom
    pts_all = [p for _, pts in series for p in pts]
    if not pts_all:
        svg.text(width / 2, height / 2, "no data", anchor="middle")
        return svg.render()
    tmax = max(t for t, _ in pts_all) or 1.0
    vmax = nice_max(max(v for _, v in pts_all))
    svg.y_grid(left, top, pw, ph, vmax, unit, 16)
    for k in range(6):
        x = left + pw * k / 5
        svg.text(x, top + ph + 16, f"{tmax * k / 5:.0f}", anchor="middle")
    svg.text(left + pw / 2, height - 8, "seconds", anchor="middle")
    for i, (name, pts) in enumerate(series):
        if pts:
            svg.polyline([(left + pw * t / tmax, top + ph - ph * v / vmax) for t, v in pts],
                         COLORS[i % len(COLORS)], width=1.5)
    svg.line(left, top + ph, left + pw, top + ph, "#333")
    svg.legend(left + pw + 15, top + 10, [n for n, _ in series])
    return svg.render()


def fmt(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) for c in r) + " |")
    return "\n".join(out)
