"""The report's figures (matplotlib, Agg): each function returns a ``Figure``.

* ``quality_utility_figure``: forget quality (log scale) against model utility, one
  point per method (top right is best);
* ``leak_rate_figure``: leak rate per attack, grouped by attack, one bar per method;
* ``scale_figure``: cost and forgetting against the number of targets (log x).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

FQ_FLOOR = 1e-300  # forget quality 0 (underflow) is drawn at the floor of the log axis

plt.rcParams.update({"font.size": 11, "axes.titlesize": 13, "axes.labelsize": 11, "legend.fontsize": 10,
                     "xtick.labelsize": 10, "ytick.labelsize": 10})


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def base_name(label: str) -> str:
    """"alu (sequential)" -> "alu": a method keeps its colour in every figure."""
    return label.split(" (", 1)[0]


def method_colors(names: Sequence[str]) -> dict[str, tuple]:
    """One colour per method (labels of the same method share it), in first-seen order."""
    cmap = plt.get_cmap("tab10")
    order = list(dict.fromkeys(base_name(n) for n in names))
    return {n: cmap(order.index(base_name(n)) % 10) for n in names}


def _colors(names: Sequence[str], given: Mapping[str, tuple] | None = None) -> dict[str, tuple]:
    if given and all(base_name(n) in given or n in given for n in names):
        return {n: given.get(n, given.get(base_name(n))) for n in names}
    return method_colors(names)


def _plain_log_labels(axis, values: Sequence[float] = ()) -> None:
    """Plain numbers on a log axis: ticks at 1-2-5 steps, or decades only when the values span > 3 decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    pos = [v for v in values if v > 0]
    wide = bool(pos) and math.log10(max(pos) / min(pos)) > 3
    axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _empty(fig: Figure, ax, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def quality_utility_figure(points: Mapping[str, tuple[float | None, float | None]],
                           title: str = "Forget quality vs model utility",
                           colors: Mapping[str, tuple] | None = None) -> Figure:
    """``points``: method -> (model utility, forget quality)."""
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110, layout="constrained")
    usable = {m: (u, max(fq, FQ_FLOOR)) for m, (u, fq) in points.items() if _finite(u) and _finite(fq)}
    ax.set_title(title)
    if not usable:
        return _empty(fig, ax, "no method has both forget quality and model utility")
    colors = _colors(list(usable), colors)
    for m, (u, fq) in usable.items():
        ax.scatter([u], [fq], s=90, color=colors[m], edgecolor="black", linewidth=0.6, zorder=3, label=m)
    us = [u for u, _ in usable.values()]
    pad = max(0.02, (max(us) - min(us)) * 0.15)
    width = max(us) - min(us) + 2 * pad  # the x-axis span: points closer than a label's width share the label
    for names, (u, fq) in _label_groups(usable, du=0.06 * width, dlog=0.08):
        ax.annotate(", ".join(names), (u, fq), textcoords="offset points", xytext=(7, 6), fontsize=10)
    ax.set_yscale("log")
    ax.set_xlabel("model utility (higher is better)")
    ax.set_ylabel("forget quality, KS p-value (log; higher is better)")
    lo = min(fq for _, fq in usable.values())
    ax.set_ylim(min(lo / 10, 1e-3), 2.0)
    ax.set_xlim(max(0.0, min(us) - pad), min(1.0, max(us) + pad) if max(us) <= 1 else max(us) + pad)
    ax.axhline(0.05, color="0.5", linestyle="--", linewidth=0.8)
    ax.text(ax.get_xlim()[0], 0.05, " p = 0.05", va="bottom", fontsize=9, color="0.4")
    ax.grid(True, which="major", alpha=0.3)
    return fig


def _label_groups(points: Mapping[str, tuple[float, float]], du: float, dlog: float) -> list[tuple[list[str], tuple]]:
    """Methods whose points (nearly) coincide share one label, so names never print over each other."""
    groups: list[tuple[list[str], tuple]] = []
    for m, (u, fq) in points.items():
        for names, (gu, gfq) in groups:
            if abs(u - gu) <= du and abs(math.log10(fq) - math.log10(gfq)) <= dlog:
                names.append(m)
                break
        else:
            groups.append(([m], (u, fq)))
    return groups


def leak_rate_figure(leaks: Mapping[str, Mapping[str, float | None]], title: str = "Leak rate per attack",
                     colors: Mapping[str, tuple] | None = None) -> Figure:
    """``leaks``: method -> attack -> leak rate (None = skipped, drawn as "n/a")."""
    methods = list(leaks)
    attacks: list[str] = []
    for per in leaks.values():
        for a in per:
            if a not in attacks:
                attacks.append(a)
    width_in = max(8.0, 1.0 + 0.55 * len(attacks) * max(1, len(methods)) ** 0.6)
    fig, ax = plt.subplots(figsize=(min(width_in, 16), 5.2), dpi=110, layout="constrained")
    ax.set_title(title)
    if not methods or not attacks:
        return _empty(fig, ax, "no attack results")
    colors = _colors(methods, colors)
    group = 0.8
    bar = group / len(methods)
    for j, m in enumerate(methods):
        xs, ys = [], []
        for i, a in enumerate(attacks):
            x = i - group / 2 + bar * (j + 0.5)
            v = leaks[m].get(a)
            if _finite(v):
                xs.append(x)
                ys.append(v)
            elif a in leaks[m]:
                ax.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=8, color="0.45")
        ax.bar(xs, ys, width=bar * 0.92, color=colors[m], label=m, edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(len(attacks)))
    ax.set_xticklabels([a.replace("_", " ") for a in attacks], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("leak rate (keyword accuracy; lower is better)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(ncols=min(len(methods), 4), loc="upper left", frameon=False)
    return fig


def heatmap_figure(values: Mapping[str, Mapping[str, float | None]], title: str, label: str,
                   vmax: float = 1.0) -> Figure:
    """``values``: row (method) → column (attack) → value (None drawn as "n/a"), one cell each, annotated."""
    import numpy as np

    rows = list(values)
    cols: list[str] = []
    for per in values.values():
        cols += [c for c in per if c not in cols]
    fig, ax = plt.subplots(figsize=(min(16, 2.0 + 0.9 * max(1, len(cols))), 1.4 + 0.5 * max(1, len(rows))),
                           dpi=110, layout="constrained")
    ax.set_title(title)
    if not rows or not cols:
        return _empty(fig, ax, "no values")
    grid = np.array([[values[r].get(c) if _finite(values[r].get(c)) else np.nan for c in cols] for r in rows],
                    dtype=float)
    image = ax.imshow(np.clip(grid, 0, vmax), cmap="Reds", vmin=0, vmax=vmax, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = grid[i, j]
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if not np.isnan(v) and v > 0.6 * vmax else "black")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels([c.replace("_", " ") for c in cols], rotation=30, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    fig.colorbar(image, ax=ax, label=label)
    return fig


SCALE_PANELS = (
    ("unlearn_seconds", "wall time to unlearn (s)", True),
    ("latency_s_forget", "latency per target query (s)", True),
    ("latency_s_retain", "latency per retain query (s)", True),
    ("forget_leak_rate", "leak rate on the targets", False),
    ("tokens_per_query_forget", "tokens per target query", True),
    ("tokens_per_query_retain", "tokens per retain query", True),
)


def scale_figure(curves: Mapping[str, Sequence[Mapping[str, float]]], title: str = "Cost vs number of targets",
                 panels: Sequence[tuple[str, str, bool]] = SCALE_PANELS,
                 colors: Mapping[str, tuple] | None = None) -> Figure:
    """``curves``: method -> stages, each a dict with ``n_targets`` and the panel keys."""
    cols = (len(panels) + 1) // 2
    fig, axes = plt.subplots(2, cols, figsize=(5.2 * cols, 7.5), dpi=110, layout="constrained", squeeze=False)
    fig.suptitle(title, fontsize=14)
    colors = _colors(list(curves), colors)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (key, label, logy) in zip(axes.ravel(), panels):
        drawn = False
        for m, stages in curves.items():
            pts = sorted((s["n_targets"], s[key]) for s in stages if _finite(s.get(key)) and _finite(s.get("n_targets")))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if m == base_name(m) else "s",
                        linestyle="-" if m == base_name(m) else "--", color=colors[m], label=m, linewidth=1.8)
                drawn = True
        ax.set_title(label)
        ax.set_xlabel("number of targets")
        if not drawn:
            _empty(fig, ax, "no data")
            continue
        ax.set_xscale("log")
        _plain_log_labels(ax.xaxis)
        ys = [s[key] for st in curves.values() for s in st if _finite(s.get(key))]
        if logy and all(v > 0 for v in ys):
            ax.set_yscale("log")
            _plain_log_labels(ax.yaxis, ys)
        if not logy:
            ax.set_ylim(-0.02, 1.05)
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = [], []
    for ax in axes.ravel():
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), frameon=False)
    return fig


def mask_figure(layers: Mapping[str, int], modules: Mapping[str, int], title: str = "GRIN mask") -> Figure:
    """Two bar charts: masked weights per layer (in layer order) and per module type."""
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=110, layout="constrained",
                                     gridspec_kw={"width_ratios": [max(len(layers), 1), max(len(modules), 1)]})
    fig.suptitle(title, fontsize=13)
    for ax, counts, label in ((ax_l, layers, "layer"), (ax_m, modules, "module")):
        if not counts:
            _empty(fig, ax, "no data")
            continue
        names = list(counts)
        ax.bar(range(len(names)), [counts[n] for n in names], color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=45 if label == "module" else 0, ha="right" if label == "module" else "center",
                      fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("masked weights")
        ax.grid(True, axis="y", alpha=0.3)
    return fig


def figure_png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG (for ``<img src="data:image/png;base64,...">``); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")
