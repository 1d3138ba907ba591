"""The decision report as a terminal table, Markdown, JSON, or one self-contained HTML file.

The HTML draws its plots as inline SVG (no scripts, fonts or network): task metric against p95
latency and against size, the Pareto front marked, and each distilled student linked to its teacher.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from bertq.families.classification import learned_nothing
from bertq.report.scenarios import Candidate, Decision

COLUMNS = [
    ("job", "job_id"),
    ("model", "model"),
    ("precision", "precision"),
    ("device", "device"),
    ("task metric (± std)", "task_metric"),
    ("seeds", "seeds"),
    ("p50 ms", "latency_p50_ms"),
    ("p95 ms", "latency_p95_ms"),
    ("per s", "throughput_per_s"),
    ("MB", "size_mb"),
    ("peak MB", "peak_memory_mb"),
    ("params", "params"),
    ("train min", "train_s"),
    ("$ per 1M", "usd_per_million"),
]

LOAD_SPREAD = 0.25
"""Candidates of one device whose CPU share while measuring differs by more than this were measured
under different load: their speed numbers are not comparable as they stand."""


def _cell(candidate: Candidate, key: str) -> str:
    if key in ("job_id", "model", "precision", "device", "seeds"):
        return str(getattr(candidate, key))
    value = candidate.metrics.get(key)
    if value is None:
        return "n/a"
    if key == "params":
        return f"{value / 1e6:.1f}M"
    if key == "task_metric":
        std = candidate.metrics.get("task_metric_std")
        return f"{value:.4f} ± {std:.4f}" if std is not None else f"{value:.4f}"
    if key == "train_s":
        return f"{value / 60:.1f}"
    if key == "usd_per_million":
        return f"{value:.3g}"
    return f"{value:.1f}"


def _winner_line(decision: Decision) -> tuple[str, str]:
    winner = decision.winner
    if winner is None:
        return "none", decision.reason
    return f"{winner.model} [{winner.precision}, job {winner.job_id}]", decision.reason


def warnings(candidates: list[Candidate]) -> list[str]:
    """Numbers that should not be trusted as they stand: a classifier at majority level, a model that
    scores worse than when it was evaluated before, speeds measured under different machine load."""
    found = []
    for candidate in candidates:
        name = f"{candidate.model} [{candidate.precision}, job {candidate.job_id}]"
        problem = learned_nothing(candidate.metrics)
        if problem:
            found.append(f"{name}: {problem}")
        if candidate.regression:
            r = candidate.regression
            found.append(
                f"{name}: regression: task metric {r['latest']:.4f} in this evaluation, {r['earlier']:.4f} in "
                f"evaluate job {r['earlier_job']} of the same model, data and precision"
            )
    for device in sorted({c.device_name for c in candidates}):
        shares = [
            (c.conditions["cpu_share"], c)
            for c in candidates
            if c.device_name == device and "cpu_share" in c.conditions
        ]
        if len(shares) > 1:
            (low, slow), (high, fast) = min(shares, key=lambda p: p[0]), max(shares, key=lambda p: p[0])
            if high - low > LOAD_SPREAD:
                found.append(
                    f"on {device}, job {slow.job_id} got {low:.0%} of its CPU threads while measuring and job "
                    f"{fast.job_id} {high:.0%}: the machine was busier for one of them, so their latency and "
                    "throughput are not comparable; evaluate both again on a quiet machine"
                )
    return found


def as_json(decisions: list[Decision], candidates: list[Candidate]) -> str:
    return json.dumps(
        {
            "scenarios": [d.as_dict() for d in decisions],
            "candidates": [c.as_dict() for c in candidates],
            "warnings": warnings(candidates),
        },
        indent=2,
    )


def as_table(decisions: list[Decision], candidates: list[Candidate]) -> str:
    lines = ["Scenarios (decided per device; numbers from different devices are never ranked together)", ""]
    for decision in decisions:
        choice, reason = _winner_line(decision)
        lines += [f"* {decision.scenario.name}  [{decision.device}]", f"    winner: {choice}", f"    why:    {reason}"]
        if decision.next_step:
            lines.append(f"    try:    {decision.next_step}")
        if decision.runner_up is not None:
            lines.append(
                f"    runner-up: {decision.runner_up.model} [{decision.runner_up.precision}, job {decision.runner_up.job_id}]"
            )
    lines += ["", f"Candidates ({len(candidates)} evaluations)", ""]
    rows = [[h for h, _ in COLUMNS]] + [[_cell(c, key) for _, key in COLUMNS] for c in candidates]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines += [f"warning: {w}" for w in warnings(candidates)]
    return "\n".join(lines)


def as_markdown(decisions: list[Decision], candidates: list[Candidate]) -> str:
    lines = [
        "# bertq decision report",
        "",
        "## Scenarios",
        "",
        "| scenario | device | winner | runner-up | why |",
        "|---|---|---|---|---|",
    ]
    for decision in decisions:
        choice, reason = _winner_line(decision)
        runner = f"{decision.runner_up.model} [{decision.runner_up.precision}]" if decision.runner_up else "-"
        step = f" Try: {decision.next_step}." if decision.next_step else ""
        lines.append(f"| {decision.scenario.name} | {decision.device} | {choice} | {runner} | {reason}.{step} |")
    lines += ["", "## Candidates", "", "| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(c, key) for _, key in COLUMNS) + " |" for c in candidates]
    lines += ["", "## Warnings", "", *(f"- {w}" for w in warnings(candidates))] if warnings(candidates) else []
    return "\n".join(lines) + "\n"


def pareto_front(candidates: list[Candidate], cost: str) -> set[int]:
    """Job ids not dominated: no other candidate has a task metric at least as high and a cost at
    least as low, with one of the two strictly better."""
    points = [(c.job_id, c.metrics.get("task_metric"), c.metrics.get(cost)) for c in candidates]
    points = [(j, q, k) for j, q, k in points if q is not None and k is not None]
    front = set()
    for job, quality, value in points:
        dominated = any(q >= quality and k <= value and (q > quality or k < value) for _, q, k in points)  # type: ignore[operator]
        if not dominated:
            front.add(job)
    return front


def _scatter(candidates: list[Candidate], cost: str, label: str) -> str:
    width, height, margin = 520, 340, 56
    points = [c for c in candidates if c.metrics.get("task_metric") is not None and c.metrics.get(cost)]
    if not points:
        return f"<p>No candidate has both a task metric and {html.escape(label)}.</p>"
    xs = [math.log10(max(c.metrics[cost], 1e-9)) for c in points]
    ys = [c.metrics["task_metric"] for c in points]
    x0, x1 = min(xs) - 0.05, max(xs) + 0.05
    y0, y1 = min(ys) - 0.01, max(ys) + 0.01

    def sx(x: float) -> float:
        return margin + (x - x0) / (x1 - x0 or 1) * (width - 2 * margin)

    def sy(y: float) -> float:
        return height - margin - (y - y0) / (y1 - y0 or 1) * (height - 2 * margin)

    front = pareto_front(points, cost)
    where = {c.job_id: (sx(x), sy(y)) for c, x, y in zip(points, xs, ys)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="task metric against {html.escape(label)}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="#333"/>',
        f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="#333"/>',
        f'<text x="{width / 2}" y="{height - 14}" text-anchor="middle" font-size="12">{html.escape(label)} (log scale)</text>',
        f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle" font-size="12">task metric</text>',
    ]
    for tick in range(5):
        y = y0 + (y1 - y0) * tick / 4
        parts.append(f'<text x="{margin - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="10">{y:.3f}</text>')
        x = x0 + (x1 - x0) * tick / 4
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - margin + 16}" text-anchor="middle" font-size="10">{10**x:.3g}</text>'
        )
    ordered = sorted((c for c in points if c.job_id in front), key=lambda c: c.metrics[cost])
    if len(ordered) > 1:
        path = " ".join(f"{where[c.job_id][0]:.1f},{where[c.job_id][1]:.1f}" for c in ordered)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-dasharray="5,3"/>')
    for candidate in points:  # distillation lineage: teacher -> student
        teacher = candidate.lineage.get("distilled_from_job")
        sources = [
            c
            for c in points
            if c.lineage.get("job") == teacher
            and c.precision == candidate.precision
            and c.device_name == candidate.device_name
        ]
        for source in sources:
            (ax, ay), (bx, by) = where[source.job_id], where[candidate.job_id]
            parts.append(
                f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="#2ca02c" '
                f'stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    parts.insert(
        1,
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#2ca02c"/></marker></defs>',
    )
    legend = [("#d62728", "Pareto front (no model both better and cheaper)"), ("#1f77b4", "other models")]
    for row, (colour, words) in enumerate(legend):
        y = margin - 34 + row * 14
        parts.append(f'<circle cx="{margin + 6}" cy="{y - 4}" r="5" fill="{colour}"/>')
        parts.append(f'<text x="{margin + 16}" y="{y}" font-size="10">{words}</text>')
    parts.append(
        f'<line x1="{width / 2 + 40}" y1="{margin - 38}" x2="{width / 2 + 64}" y2="{margin - 38}" stroke="#2ca02c" '
        f'stroke-width="1.5" marker-end="url(#arrow)"/><text x="{width / 2 + 70}" y="{margin - 34}" font-size="10">'
        "teacher to distilled student</text>"
    )
    for candidate in points:
        x, y = where[candidate.job_id]
        colour = "#d62728" if candidate.job_id in front else "#1f77b4"
        title = html.escape(f"job {candidate.job_id}: {candidate.model} [{candidate.precision}]")
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colour}"><title>{title}</title></circle>')
        parts.append(
            f'<text x="{x + 8:.1f}" y="{y - 8:.1f}" font-size="10">{candidate.job_id} {candidate.precision}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def sweep_plot(sweep: dict[str, Any], parameter: str) -> str:
    """The sweep's metric against one swept setting: each seed a point, the mean per value a line
    (a sweep over train_limit is a learning curve)."""
    width, height, margin = 420, 280, 56
    points = [
        (float(row["setting"][parameter]), value, row["model"])
        for row in sweep.get("settings", [])
        if parameter in row.get("setting", {})
        for value in row.get("values", [])
    ]
    if not points:
        return ""
    log = parameter in ("lr", "train_limit") and all(x > 0 for x, _, _ in points)
    xs = [math.log10(x) if log else x for x, _, _ in points]
    ys = [y for _, y, _ in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys) - 0.01, max(ys) + 0.01
    pad = (x1 - x0) * 0.08 or 0.5

    def sx(x: float) -> float:
        return margin + (x - x0 + pad) / (x1 - x0 + 2 * pad) * (width - 2 * margin)

    def sy(y: float) -> float:
        return height - margin - (y - y0) / (y1 - y0 or 1) * (height - 2 * margin)

    metric = sweep.get("metric", "task metric")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(metric)} against {html.escape(parameter)}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" y2="{height - margin}" stroke="#333"/>',
        f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="#333"/>',
        f'<text x="{width / 2}" y="{height - 14}" text-anchor="middle" font-size="12">{html.escape(parameter)}'
        f"{' (log scale)' if log else ''}</text>",
        f'<text x="16" y="{height / 2}" transform="rotate(-90 16 {height / 2})" text-anchor="middle" '
        f'font-size="12">{html.escape(metric)}</text>',
        f'<circle cx="{margin + 6}" cy="{margin - 28}" r="4" fill="#1f77b4" fill-opacity="0.6"/>'
        f'<text x="{margin + 14}" y="{margin - 24}" font-size="10">one seed</text>'
        f'<line x1="{margin + 80}" y1="{margin - 28}" x2="{margin + 100}" y2="{margin - 28}" stroke="#d62728" '
        f'stroke-width="2"/><text x="{margin + 106}" y="{margin - 24}" font-size="10">mean across seeds</text>',
    ]
    for tick in range(5):
        y = y0 + (y1 - y0) * tick / 4
        parts.append(f'<text x="{margin - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="10">{y:.3f}</text>')
    for x in sorted(set(xs)):
        label = f"{10**x:.3g}" if log else f"{x:.3g}"
        parts.append(
            f'<text x="{sx(x):.1f}" y="{height - margin + 16}" text-anchor="middle" font-size="10">{label}</text>'
        )
    models = sorted({m for _, _, m in points})
    for model in models:
        means = []
        for x in sorted({x for (x, _, m), _ in zip(points, xs) if m == model}):
            values = [y for (px, y, m) in points if px == x and m == model]
            position = math.log10(x) if log else x
            means.append((sx(position), sy(sum(values) / len(values))))
            for value in values:
                parts.append(
                    f'<circle cx="{sx(position):.1f}" cy="{sy(value):.1f}" r="4" fill="#1f77b4" fill-opacity="0.6">'
                    f"<title>{html.escape(model)}: {value:.4f}</title></circle>"
                )
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in means)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d62728" stroke-width="2"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def _setting_text(setting: Any) -> str:
    """`lr=0.0001, epochs=2` for a setting's values; empty for none (a plain comparison of models)."""
    if isinstance(setting, dict):
        return ", ".join(f"{key}={value}" for key, value in setting.items())
    return str(setting or "")


def _sweeps_html(sweeps: list[dict[str, Any]]) -> str:
    if not sweeps:
        return ""
    parts = ["<h2>Sweeps</h2>"]
    for sweep in sweeps:
        best = sweep.get("best") or {}
        spread = f" ± {best['std']:.4f}" if best.get("std") is not None else ""
        mean = f"{best['mean']:.4f}" if best.get("mean") is not None else "n/a"
        parameters = sorted({k for row in sweep.get("settings", []) for k in row.get("setting", {})})
        setting = _setting_text(best.get("setting"))
        parts.append(
            f"<h3>{html.escape(sweep['kind'])} job {sweep['job_id']} ({html.escape(str(sweep.get('task')))}): best "
            f"{html.escape(str(best.get('model', '')))}{' (' + html.escape(setting) + ')' if setting else ''} at "
            f"{html.escape(str(sweep.get('metric')))} {mean}{spread}</h3>"
        )
        if not parameters:  # a comparison of models alone: nothing to plot against, so each one's numbers
            rows = "".join(
                f"<tr><td>{html.escape(str(row.get('model', '')))}</td><td>{row['mean']:.4f}"
                f"{' ± ' + format(row['std'], '.4f') if row.get('std') is not None else ''}</td>"
                f"<td>{row.get('seeds', '')}</td></tr>"
                for row in sweep.get("settings", [])
                if row.get("mean") is not None
            )
            parts.append(
                f"<table><tr><th>model</th><th>{html.escape(str(sweep.get('metric')))}</th><th>seeds</th></tr>{rows}</table>"
            )
        parts.append("<div class='plots'>")
        for parameter in parameters:
            caption = "learning curve" if parameter == "train_limit" else f"{sweep.get('metric')} against {parameter}"
            parts.append(
                f"<figure>{sweep_plot(sweep, parameter)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    return "".join(parts)


def as_html(decisions: list[Decision], candidates: list[Candidate], sweeps: list[dict[str, Any]] | None = None) -> str:
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(cell)}</td>"
            for cell in [
                d.scenario.name,
                d.device,
                _winner_line(d)[0],
                f"{d.runner_up.model} [{d.runner_up.precision}]" if d.runner_up else "-",
                d.reason + (f". Try: {d.next_step}." if d.next_step else ""),
            ]
        )
        + "</tr>"
        for d in decisions
    )
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c, key))}</td>" for _, key in COLUMNS) + "</tr>" for c in candidates
    )
    devices = sorted({c.device_name for c in candidates})
    plots = ""
    for device in devices:
        group = [c for c in candidates if c.device_name == device]
        plots += (
            f"<h3>Measured on {html.escape(device)}</h3><div class='plots'>"
            f"<figure>{_scatter(group, 'latency_p95_ms', 'p95 latency, ms (batch 1)')}"
            "<figcaption>Task metric against p95 latency</figcaption></figure>"
            f"<figure>{_scatter(group, 'size_mb', 'size of the weights, MB')}"
            "<figcaption>Task metric against size</figcaption></figure></div>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bertq decision report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; text-align: left; }}
th {{ background: #f3f3f3; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figcaption {{ font-size: 12px; color: #555; }}
.warning {{ color: #a40; }}
</style></head><body>
<h1>bertq decision report</h1>
<p>Which model to deploy for which scenario, from the numbers bertq's evaluate jobs measured.
Scenarios are decided per device. In the plots, red points form the Pareto front (no other model
is both more accurate and cheaper); green arrows go from a teacher to its distilled student.</p>
<h2>Scenarios</h2>
<table><tr><th>scenario</th><th>device</th><th>winner</th><th>runner-up</th><th>why</th></tr>{rows}</table>
<h2>Plots</h2>{plots}
{_sweeps_html(sweeps or [])}
<h2>Candidates</h2>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h, _ in COLUMNS)}</tr>{table}</table>
{"".join(f'<p class="warning">warning: {html.escape(w)}</p>' for w in warnings(candidates))}
</body></html>
"""


RENDERERS: dict[str, Any] = {"table": as_table, "markdown": as_markdown, "json": as_json, "html": as_html}
