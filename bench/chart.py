"""A small hand-written SVG of the benchmark report: throughput bars, saturated and paced
latency beside them."""

from xml.sax.saxutils import escape

ROW = 34
LEFT = 400
BAR_MAX = 340
WIDTH = LEFT + BAR_MAX + 640


def render(report: dict) -> str:
    rows = report.get("configurations", [])
    top = 64
    height = top + ROW * max(len(rows), 1) + 70
    peak = max((r["rps"] for r in rows), default=1.0) or 1.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        '<text x="16" y="26" font-size="17" font-weight="bold">alternator-mesh: '
        "throughput per configuration (median req/s)</text>",
        f'<text x="16" y="46" fill="#555">{escape(subtitle(report))}</text>',
    ]
    for i, r in enumerate(rows):
        y = top + i * ROW
        width = max(1.0, BAR_MAX * r["rps"] / peak)
        color = "#3b7dd8" if r["id"] in ("3", "4", "5") else "#9aa5b1"
        label = f"{r['id']}  {r['title']}"
        out.append(f'<text x="16" y="{y + 19}">{escape(label[:56])}</text>')
        out.append(f'<rect x="{LEFT}" y="{y + 5}" width="{width:.1f}" height="{ROW - 12}" fill="{color}"/>')
        out.append(f'<text x="{LEFT + width + 6:.1f}" y="{y + 19}">{r["rps"]:.0f}</text>')
        cpu = r.get("proxy_cpu_us_per_request")
        cpu_text = f" · proxy CPU {cpu:.0f} µs/req" if cpu is not None else ""
        paced = r.get("paced")
        paced_text = (
            f" · at {paced['offered_rps']:,.0f} req/s: p50 {paced['p50_us']:.0f} µs, p99 {paced['p99_us']:.0f} µs"
            if paced
            else ""
        )
        out.append(
            f'<text x="{LEFT + BAR_MAX + 60}" y="{y + 19}" fill="#333">'
            f"p50 {r['p50_us'] / 1000:.2f} ms · p99 {r['p99_us'] / 1000:.2f} ms{cpu_text}"
            f"{escape(paced_text)}</text>"
        )
    y = top + ROW * len(rows) + 24
    ratios = report.get("ratios", {})
    parts = [
        f"{name} {q['throughput'] * 100:.1f}%"
        + (
            f" (added p99 at {q['paced']['offered_rps']:,.0f} req/s {q['paced']['added_p99_us']:+.0f} µs)"
            if "paced" in q
            else f" (saturated p99 {q['added_p99_us']:+.0f} µs)"
        )
        for name, q in ratios.items()
        if name in ("3/2", "4/2", "5/2")
    ]
    if parts:
        out.append(f'<text x="16" y="{y}">{escape("throughput ratios: " + ", ".join(parts))}</text>')
    out.append(
        f'<text x="16" y="{y + 22}" fill="#555">blue: with the alternator-filter · '
        f"grey: references · {escape(report.get('generated_at', ''))}</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def subtitle(report: dict) -> str:
    s = report.get("settings", {})
    m = report.get("machine", {})
    paced = "" if s.get("no_paced") else f"paced phase at {s.get('paced_rate', 0):,.0f} req/s; "
    return (
        f"wrk {s.get('connections')} connections, {s.get('repetitions')} x {s.get('duration')} s, "
        f"medians; {paced}{m.get('cpus')} CPUs, load {m.get('loadavg_at_start', 0):.1f}"
    )
