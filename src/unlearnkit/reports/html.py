"""One self-contained HTML report (figures embedded as base64 PNG) plus a Markdown summary.

``write_report(results, out_html, out_md)`` accepts result dicts or JSON paths of
these kinds (mixed freely; a ``bundle`` holds a list of the others):

* evaluation: a TOFU evaluation result (``{"suite": "tofu", "summary": {...}}``,
  method name from ``"method"`` or the model name), ``{"kind": "evaluation",
  "method", "summary"}``, or the demo's ``results.json`` (``{"rows", "results"}``);
* attacks: ``run_attacks`` output (``{"kind": "attacks", "method", "attacks"}``);
* scale: ``run_scale`` output (``{"kind": "scale", "method", "stages"}``);
* bundle: ``{"kind": "bundle", "results": [...]}`` (what benchmarks/robustness.py writes);
* a GRIN mask summary (``grin_mask.json`` of a GRIN run: where the mask fell, per layer and module);
* evidence: answers side by side (``{"kind": "evidence", "splits": ...}``, ``reports/evidence.py``).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.errors import DataError
from unlearnkit.io import read_json, write_text_atomic

PREFERRED = ("forget_quality", "model_utility", "forget_keyword_accuracy", "forget_rouge", "forget_prob",
             "forget_truth_ratio", "retain_keyword_accuracy", "retain_rouge", "retain_prob", "retain_truth_ratio",
             "privleak", "seconds")
ATTACK_COLUMNS = ("leak_rate", "rouge_l_recall", "n", "seconds")
SCALE_FIRST = ("n_targets", "n_new_targets", "unlearn_seconds", "latency_s_forget", "latency_s_retain",
               "tokens_per_query_forget", "tokens_per_query_retain", "latency_s", "tokens_per_query", "calls_per_query",
               "forget_leak_rate", "forget_rouge", "earlier_leak_rate", "retain_keyword_accuracy", "retain_rouge",
               "over_refusal")
SKIP_KEYS = {"per_example", "model", "config", "task", "cache_key"}


def fmt(value: Any) -> str:
    """How every number is written in the report (tests look for these strings)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if abs(value) < 1e-3 or abs(value) >= 1e6:
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class ReportData:
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> summary numbers
    attacks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # method -> attack -> result
    scale: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> scale result
    masks: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> GRIN mask summary
    evidence: dict[str, Any] = field(default_factory=dict)  # answers side by side (reports/evidence.py)
    sources: list[str] = field(default_factory=list)


def _load(item: Any) -> tuple[Any, str]:
    if isinstance(item, (str, Path)):
        path = Path(item)
        if path.is_dir():
            path = path / "results.json"
        if not path.is_file():
            raise DataError(f"no result file at {path}: give a result JSON (evaluation, attacks, scale or "
                            "bundle) or a directory holding results.json")
        try:
            return read_json(path), str(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{path} is not a JSON result ({exc}): give a result JSON (evaluation, attacks, scale "
                            "or bundle)") from exc
    return item, "(dict)"


def collect(results: Iterable[Any]) -> ReportData:
    """Sort every result into methods / attacks / scale (see the module docstring)."""
    data = ReportData()
    for item in results:
        payload, source = _load(item)
        _add(data, payload, source)
    return data


def _method_name(d: Mapping[str, Any]) -> str:
    if d.get("method"):
        return str(d["method"])
    model = d.get("model")
    if isinstance(model, Mapping) and model.get("name"):
        return str(model["name"])
    return "model"


def _add(data: ReportData, d: Any, source: str) -> None:
    if isinstance(d, list):
        for x in d:
            _add(data, x, source)
        return
    if not isinstance(d, Mapping):
        raise DataError(f"{source}: a result must be a JSON object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind == "evidence":
        data.evidence = dict(d)
        data.sources.append(source)
        return
    if kind == "bundle":
        for x in d.get("results", []):
            _add(data, x, source)
        data.sources.append(source)
        return
    if kind == "attacks" or ("attacks" in d and isinstance(d["attacks"], Mapping) and kind is None):
        data.attacks.setdefault(_method_name(d), {}).update(d["attacks"])
    elif kind == "scale":
        label = _method_name(d) + (" (sequential)" if d.get("sequential") else "")
        data.scale[label] = dict(d)
    elif {"masked", "layers", "modules"} <= set(d):  # a GRIN grin_mask.json
        data.masks[str(d.get("label") or Path(source).parent.name or "grin")] = dict(d)
    elif kind == "evaluation" or d.get("suite") or (kind is None and "summary" in d):
        data.methods.setdefault(_method_name(d), {}).update(d["summary"])
    elif "rows" in d and "results" in d:  # the demo's results.json
        for name, summary in d["results"].items():
            data.methods.setdefault(name, {}).update(summary)
    else:
        raise DataError(f"{source}: not a result unlearnkit reports on (expected an evaluation, attacks, scale "
                         f"or bundle result; keys {sorted(d)[:8]})")
    data.sources.append(source)


# -- tables -------------------------------------------------------------------------------
def method_metric_keys(methods: Mapping[str, Mapping[str, Any]]) -> list[str]:
    keys = {k for s in methods.values() for k, v in s.items() if _is_number(v) or v is None}
    keys -= SKIP_KEYS
    return [k for k in PREFERRED if k in keys] + sorted(keys - set(PREFERRED))


def attack_detail_numbers(res: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The attack result's other numbers (relearning before/after, many-shot shots…), flattened."""
    out: list[tuple[str, Any]] = []
    for k, v in res.items():
        if k in ATTACK_COLUMNS or k in SKIP_KEYS or k == "shots_used":
            continue
        if _is_number(v):
            out.append((k, v))
        elif isinstance(v, Mapping):
            for k2, v2 in v.items():
                if _is_number(v2):
                    out.append((f"{k}.{k2}", v2))
    return out


def scale_keys(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for s in stages:
        for k, v in s.items():
            if k not in keys and k not in SKIP_KEYS and (_is_number(v) or v is None or
                                                           (isinstance(v, list) and all(_is_number(x) for x in v))):
                keys.append(k)
    return [k for k in SCALE_FIRST if k in keys] + [k for k in keys if k not in SCALE_FIRST]


def _cell(v: Any) -> str:
    cls = ' class="num"' if _is_number(v) or v is None else ""
    return f"<td{cls}>{html.escape(fmt(v))}</td>"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>'


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines) + "\n"


def method_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    names = list(data.methods)
    return ["metric", *names], [[k, *[data.methods[m].get(k) for m in names]] for k in method_metric_keys(data.methods)]


def attack_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    from unlearnkit.attacks.recovery import recovery_ratios

    ratios = recovery_ratios(data.attacks)
    headers = ["method", "attack", "leak rate", "recovery ratio", "ROUGE-L recall", "n", "seconds",
               "details / reason"]
    rows = []
    for m, per in data.attacks.items():
        for a, res in per.items():
            if res.get("skipped"):
                note = "skipped: " + str(res.get("reason", ""))
            else:
                note = "; ".join(f"{k} {fmt(v)}" for k, v in attack_detail_numbers(res))
            values = [res.get(c) for c in ATTACK_COLUMNS]
            rows.append([m, a, values[0], ratios.get(m, {}).get(a), *values[1:], note])
    return headers, rows


def robust_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    """One row per attack: the method that leaks least under it, with its recovery ratio."""
    from unlearnkit.attacks.recovery import most_robust

    headers = ["attack", "most robust method", "its leak rate", "its recovery ratio", "target's leak rate",
               "methods run", "skipped for", "longest seconds"]
    return headers, [[r["attack"], r["method"] or "none ran", r["leak_rate"], r["recovery_ratio"],
                      r["reference_leak_rate"], r["methods_run"], ", ".join(r["skipped_for"]) or "–",
                      r["max_seconds"]] for r in most_robust(data.attacks)]


def robust_markdown(attack_results: Sequence[Any]) -> str:
    """The most-robust-method table of ``attack_results`` (``run_attacks`` results) as Markdown."""
    data = collect(list(attack_results))
    return "## Most robust method per attack\n\n" + _md_table(*robust_rows(data)) if data.attacks else ""


def scale_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    keys: list[str] = []
    for res in data.scale.values():
        for k in scale_keys(res.get("stages", [])):
            if k not in keys:
                keys.append(k)
    rows = [[label, *[s.get(k) for k in keys]] for label, res in data.scale.items() for s in res.get("stages", [])]
    return ["method", *keys], rows


# -- figures --------------------------------------------------------------------------------
def figures(data: ReportData) -> list[tuple[str, str, str]]:
    """(title, caption, base64 PNG) for each figure that has data."""
    from unlearnkit.reports.plots import (
        figure_png_base64,
        leak_rate_figure,
        method_colors,
        quality_utility_figure,
        scale_figure,
    )

    colors = method_colors([*data.methods, *data.attacks, *data.scale])
    out = []
    points = {m: (s.get("model_utility"), s.get("forget_quality")) for m, s in data.methods.items()}
    if any(_is_number(u) and _is_number(f) for u, f in points.values()):
        out.append(("Forget quality vs model utility",
                    "One point per method. Forget quality is the KS-test p-value against the retain model "
                    "(log scale, 1 = indistinguishable from never having seen the data); utility is the harmonic "
                    "mean of the retain/real-author/world-fact scores. Top right is best.",
                    figure_png_base64(quality_utility_figure(points, colors=colors))))
    if data.attacks:
        leaks = {m: {a: (None if r.get("skipped") else r.get("leak_rate")) for a, r in per.items()}
                 for m, per in data.attacks.items()}
        out.append(("Leak rate per attack",
                    "Fraction of forget questions whose answer still contains the answer's keywords under each "
                    "attack (prompt injection: fraction of target names revealed; relearning: after the "
                    "fine-tuning steps). Lower is better; n/a = attack skipped (see the table).",
                    figure_png_base64(leak_rate_figure(leaks, colors=colors))))
    from unlearnkit.attacks.recovery import recovery_ratios

    ratios = recovery_ratios(data.attacks)
    if ratios:
        from unlearnkit.reports.plots import heatmap_figure

        out.append(("Recovery ratio: method × attack",
                    "Leak under each attack ÷ the target model's leak under the same attack: 0 = the attack "
                    "brings nothing back, 1 = as much as before unlearning (cells above 1 are drawn at 1; n/a: "
                    "skipped, or the target leaks nothing under it).",
                    figure_png_base64(heatmap_figure(ratios, "Recovery ratio", "recovered share", vmax=1.0))))
    if data.scale:
        curves = {label: res.get("stages", []) for label, res in data.scale.items()}
        out.append(("Cost vs number of targets",
                    "Wall time to unlearn, latency and tokens per query (prompt + generated, every model call "
                    "a query makes), and leak rate on the targets, as the number of targets grows.",
                    figure_png_base64(scale_figure(curves, colors=colors))))
    for label, mask in data.masks.items():
        from unlearnkit.reports.plots import mask_figure

        out.append((f"Where the GRIN mask fell: {label}",
                    f"Masked weights (top {fmt(mask.get('p'))} by forget/retain gradient ratio, "
                    f"{'per tensor' if mask.get('per_tensor') else 'global'}) per layer and per module "
                    f"(layer 'other': embeddings, LM head and final norm); "
                    f"{mask.get('masked')} of {mask.get('parameters')} weights.",
                    figure_png_base64(mask_figure({("other" if k == "none" else k): v
                                                   for k, v in mask.get("layers", {}).items()},
                                                  mask.get("modules", {})))))
    return out


def mask_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for label, mask in data.masks.items():
        total = mask.get("masked") or 0
        for module, count in mask.get("modules", {}).items():
            rows.append([label, module, count, count / total if total else None])
    return ["run", "module", "masked weights", "share of the mask"], rows


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1300px;color:#222;
padding:0 16px}
h1{font-size:26px;margin-bottom:4px} h2{font-size:20px;margin-top:34px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:13px} figure{margin:14px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:13px;max-width:1000px}
.scroll{overflow-x:auto} table{border-collapse:collapse;font-size:13px;margin:10px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} caption{text-align:left;font-weight:600;
padding:4px 0}
"""


def render_html(data: ReportData, title: str = "unlearnkit report", with_figures: bool = True) -> str:
    """The report page; without figures (a partial report during a long run) it says they come at the end."""
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"meta\">Generated {time.strftime('%Y-%m-%d %H:%M:%S')} from "
             f"{len(data.sources)} result file(s). Every number is in the tables below.</p>"]
    if not with_figures:
        parts.append("<p class=\"meta\">Partial results: the figures are drawn when the run ends; every number "
                     "so far is in the tables below.</p>")
    for fig_title, caption, b64 in figures(data) if with_figures else ():
        parts.append(f"<h2>{html.escape(fig_title)}</h2><figure><img alt=\"{html.escape(fig_title)}\" "
                     f"src=\"data:image/png;base64,{b64}\"><figcaption>{html.escape(caption)}</figcaption></figure>")
    if data.methods:
        parts.append("<h2>Metrics per method</h2>" + _html_table(*method_rows(data)))
    if data.attacks:
        parts.append("<h2>Most robust method per attack</h2>" + _html_table(*robust_rows(data)))
        parts.append("<h2>Attacks</h2>" + _html_table(*attack_rows(data)))
    if data.scale:
        parts.append("<h2>Scale sweep</h2>" + _html_table(*scale_rows(data)))
    if data.masks:
        parts.append("<h2>GRIN masks</h2>" + _html_table(*mask_rows(data)))
    if data.evidence:
        from unlearnkit.reports.evidence import evidence_html

        parts.append(evidence_html(data.evidence))
    if not (data.methods or data.attacks or data.scale or data.masks or data.evidence):
        parts.append("<p>No results.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(data: ReportData, html_name: str | None = None, title: str = "unlearnkit report") -> str:
    out = [f"# {title}\n"]
    if data.methods:
        cols = [k for k in ("forget_quality", "model_utility", "forget_keyword_accuracy", "forget_rouge", "privleak")
                if any(k in s for s in data.methods.values())]
        rows = []
        for m, s in data.methods.items():
            worst = None
            per = data.attacks.get(m, {})
            leaks = [(r.get("leak_rate"), a) for a, r in per.items() if not r.get("skipped")
                     and _is_number(r.get("leak_rate"))]
            if leaks:
                worst = max(leaks, key=lambda t: t[0])  # the first of the highest
            label = None
            if worst:
                label = f"{worst[1]} ({fmt(worst[0])})" if worst[0] > 0 else "none leaked"
            rows.append([m, *[s.get(k) for k in cols], label])
        out.append("## Methods\n\n" + _md_table(["method", *cols, "worst attack (leak rate)"], rows))
    if data.attacks:
        attacks: list[str] = []
        for per in data.attacks.values():
            attacks += [a for a in per if a not in attacks]
        rows = [[a, *[("skipped" if data.attacks[m].get(a, {}).get("skipped")
                       else data.attacks[m].get(a, {}).get("leak_rate")) for m in data.attacks]] for a in attacks]
        out.append("## Leak rate per attack\n\n" + _md_table(["attack", *data.attacks], rows))
        out.append("## Most robust method per attack\n\n" + _md_table(*robust_rows(data)))
    if data.scale:
        keys = ["n_targets", "unlearn_seconds", "latency_s_forget", "latency_s_retain", "tokens_per_query_forget",
                "tokens_per_query_retain", "forget_leak_rate", "retain_keyword_accuracy"]
        rows = [[label, *[s.get(k) for k in keys]] for label, res in data.scale.items() for s in res.get("stages", [])]
        out.append("## Scale sweep\n\n" + _md_table(["method", *keys], rows))
    if data.masks:
        out.append("## GRIN masks\n\n" + _md_table(*mask_rows(data)))
    if html_name:
        out.append(f"Figures and every number: [{html_name}]({html_name}).\n")
    return "\n".join(out)


def write_report(results: Sequence[Any], out_html: str | Path, out_md: str | Path | None = None,
                 title: str = "unlearnkit report", with_figures: bool = True) -> dict[str, Any]:
    """Write the HTML report (and the Markdown summary when ``out_md`` is given).

    ``with_figures=False`` leaves the plots out (drawing them costs about a second each time): long runs
    rewrite a partial report after every step and draw the figures once, at the end.

    ``results``: result dicts or paths to result JSON files (see the module docstring).
    Returns ``{"html": path, "markdown": path or None, "figures": n, "methods": [...],
    "attacks": [...], "scale": [...]}``.
    """
    if isinstance(results, (str, Path, Mapping)):
        results = [results]
    data = collect(results)
    page = render_html(data, title, with_figures)
    out_html = write_text_atomic(out_html, page)
    md_path = None
    if out_md is not None:
        md_path = write_text_atomic(out_md, render_markdown(data, Path(out_html).name, title))
    return {"html": str(out_html), "markdown": str(md_path) if md_path else None,
            "figures": page.count("data:image/png;base64,"), "methods": list(data.methods),
            "attacks": list(data.attacks), "scale": list(data.scale)}
