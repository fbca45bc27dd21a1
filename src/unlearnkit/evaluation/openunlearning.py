"""Compare a TOFU result with OpenUnlearning's own output for the same model and data.

OpenUnlearning writes ``TOFU_EVAL.json``: every metric with ``agg_value`` and
``value_by_index`` (index i = the i-th record of the split file). ``compare`` lines its
per-example values up with ours and reports, per value, the median and largest relative
gap and how many examples agree within a tolerance; ``metric_parity`` recomputes
OpenUnlearning's derived values (truth ratios, normalised probabilities, model utility,
MIA AUC, privleak, ROUGE) from its own per-example inputs with our metric functions, which
checks the definitions independently of any model (gaps are relative, ROUGE's absolute).

OpenUnlearning stores the truth ratio as ``tr = GM P̃(perturbed) / P̃(base)``; ours is
``R = 1 / tr`` (``truth_ratio.py``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.errors import DataError

# our per-example split name → OpenUnlearning's metric-name prefix
SPLITS = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}


def load_eval(path: str | Path) -> dict[str, Any]:
    """OpenUnlearning's ``TOFU_EVAL.json`` (or ``.json.gz``)."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not OpenUnlearning's TOFU_EVAL.json ({exc}): give the file its eval run wrote") from exc
    if not isinstance(data, dict) or "forget_Q_A_Prob" not in data:
        raise DataError(f"{path} has no 'forget_Q_A_Prob' metric: give the TOFU_EVAL.json of an OpenUnlearning "
                        "TOFU evaluation")
    return data


def _by_index(ou: dict, metric: str, key: str) -> list[float] | None:
    entry = ou.get(metric)
    if not isinstance(entry, dict) or "value_by_index" not in entry:
        return None
    rows = entry["value_by_index"]
    return [rows[str(i)][key] for i in range(len(rows))]


def _gaps(ours: list[float], theirs: list[float], tol: float) -> dict[str, Any]:
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if a.shape != b.shape:
        raise DataError(f"per-example values do not line up: {a.size} of ours vs {b.size} of OpenUnlearning's "
                        "(evaluate the same split files, without --eval-limit)")
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    return {"n": int(a.size), "median_rel_gap": float(np.median(rel)), "max_rel_gap": float(rel.max()),
            "within_tol": int((rel <= tol).sum()), "tol": tol}


def per_example_pairs(result: dict, ou: dict) -> dict[str, tuple[list[float], list[float]]]:
    """(ours, OpenUnlearning's) per-example lists for every value both files hold."""
    ex = result["per_example"]
    pairs: dict[str, tuple[list[float], list[float]]] = {}
    for split, prefix in SPLITS.items():
        rows = ex.get(split)
        if not rows:
            continue
        prob_metric = f"{prefix}_Q_A_Prob" if split in ("forget", "retain") else f"{prefix}_Q_A_Prob_normalised"
        tr_metric = "forget_truth_ratio" if split == "forget" else f"{prefix}_Truth_Ratio"
        theirs = _by_index(ou, prob_metric, "prob")
        if theirs is not None:
            pairs[f"{split}_prob"] = ([r["prob"] for r in rows], theirs)
        theirs = _by_index(ou, tr_metric, "score")
        if theirs is not None:
            pairs[f"{split}_truth_ratio"] = ([1.0 / r["truth_ratio"] for r in rows], theirs)
        theirs = _by_index(ou, f"{prefix}_Q_A_ROUGE", "rougeL_recall")
        if theirs is not None and "rouge" in rows[0]:
            pairs[f"{split}_rouge"] = ([r["rouge"] for r in rows], theirs)
    theirs = _by_index(ou, "extraction_strength", "score")
    if theirs is not None and ex.get("forget"):
        pairs["forget_extraction_strength"] = ([r["extraction_strength"] for r in ex["forget"]], theirs)
    mia = ex.get("mia", {})
    ou_mink = ou.get("mia_min_k")
    if "min_k" in mia and isinstance(ou_mink, dict) and "forget" in ou_mink:
        for side in ("forget", "holdout"):
            rows = ou_mink[side]["value_by_index"]
            pairs[f"mia_min_k_{side}"] = (mia["min_k"][side], [rows[str(i)]["score"] for i in range(len(rows))])
    return pairs


def generation_agreement(result: dict, ou: dict) -> dict[str, Any]:
    """Fraction of questions whose generated text equals OpenUnlearning's, per split."""
    out = {}
    for split, prefix in SPLITS.items():
        theirs = _by_index(ou, f"{prefix}_Q_A_ROUGE", "generation")
        rows = result["per_example"].get(split)
        if theirs is None or not rows or "generation" not in rows[0]:
            continue
        same = sum(r["generation"] == t for r, t in zip(rows, theirs))
        out[split] = {"same": same, "n": len(rows), "fraction": same / len(rows)}
    return out


SUMMARY_KEYS = {  # ours → OpenUnlearning's agg_value
    "forget_prob": "forget_Q_A_Prob", "forget_rouge": "forget_Q_A_ROUGE", "forget_truth_ratio": "forget_truth_ratio",
    "model_utility": "model_utility", "forget_extraction_strength": "extraction_strength",
    "mia_min_k_auc": "mia_min_k", "privleak": "privleak",
}


def compare(result: dict, ou: dict, tol: float = 1e-4) -> dict[str, Any]:
    """Per-example gaps, summary values side by side, and generation agreement."""
    values = {name: _gaps(a, b, tol) for name, (a, b) in per_example_pairs(result, ou).items()}
    summary = {}
    for ours, theirs in SUMMARY_KEYS.items():
        entry = ou.get(theirs)
        if isinstance(entry, dict) and entry.get("agg_value") is not None and result["summary"].get(ours) is not None:
            summary[ours] = {"ours": result["summary"][ours], "openunlearning": entry["agg_value"]}
    return {"per_example": values, "summary": summary, "generation": generation_agreement(result, ou)}


def metric_parity(ou: dict) -> dict[str, float]:
    """Largest relative gap between OpenUnlearning's derived values and ours computed from its inputs."""
    from unlearnkit.evaluation.mia import mia_auc, privleak
    from unlearnkit.evaluation.probability import mc_prob
    from unlearnkit.evaluation.rouge import rouge_l_recall
    from unlearnkit.evaluation.truth_ratio import forget_truth_ratio_score, retain_truth_ratio_score, truth_ratio
    from unlearnkit.evaluation.utility import model_utility

    gaps: dict[str, float] = {}
    ratios: dict[str, list[float]] = {}
    for prefix, base in (("forget", "PARA"), ("retain", "PARA"), ("ra", None), ("wf", None)):
        base_metric = f"{prefix}_Q_A_{base}_Prob" if base else f"{prefix}_Q_A_Prob"
        base_loss = _by_index(ou, base_metric, "avg_loss")
        pert_loss = _by_index(ou, f"{prefix}_Q_A_PERT_Prob", "avg_loss")
        tr_metric = "forget_truth_ratio" if prefix == "forget" else f"{prefix}_Truth_Ratio"
        if base_loss is None or pert_loss is None or _by_index(ou, tr_metric, "score") is None:
            continue
        r = [truth_ratio(float(np.exp(-b)), [float(np.exp(-p)) for p in ps]) for b, ps in zip(base_loss, pert_loss)]
        ratios[prefix] = r
        gaps[f"{prefix}_truth_ratio"] = _rel(1.0 / np.asarray(r), _by_index(ou, tr_metric, "score"))
        agg = forget_truth_ratio_score(r) if prefix == "forget" else retain_truth_ratio_score(r)
        gaps[f"{prefix}_truth_ratio_agg"] = _rel([agg], [ou[tr_metric]["agg_value"]])
        if prefix in ("ra", "wf"):
            probs = [mc_prob(float(np.exp(-b)), [float(np.exp(-p)) for p in ps]) for b, ps in zip(base_loss, pert_loss)]
            gaps[f"{prefix}_prob_normalised"] = _rel(probs, _by_index(ou, f"{prefix}_Q_A_Prob_normalised", "prob"))
    for prefix in ("forget", "retain", "ra", "wf"):
        rows = ou.get(f"{prefix}_Q_A_ROUGE", {}).get("value_by_index")
        if rows:
            mine = [rouge_l_recall(v["generation"], v["ground_truth"]) for v in rows.values()]
            gaps[f"{prefix}_rouge"] = float(np.max(np.abs(np.asarray(mine) - [v["rougeL_recall"] for v in rows.values()])))
    parts = {}
    for ours, theirs in (("retain_prob", "retain_Q_A_Prob"), ("retain_rouge", "retain_Q_A_ROUGE"),
                         ("retain_truth_ratio", "retain_Truth_Ratio"), ("real_authors_prob", "ra_Q_A_Prob_normalised"),
                         ("real_authors_rouge", "ra_Q_A_ROUGE"), ("real_authors_truth_ratio", "ra_Truth_Ratio"),
                         ("world_facts_prob", "wf_Q_A_Prob_normalised"), ("world_facts_rouge", "wf_Q_A_ROUGE"),
                         ("world_facts_truth_ratio", "wf_Truth_Ratio")):
        if theirs in ou:
            parts[ours] = ou[theirs]["agg_value"]
    if len(parts) == 9 and "model_utility" in ou:
        gaps["model_utility"] = _rel([model_utility(parts)], [ou["model_utility"]["agg_value"]])
    mink = ou.get("mia_min_k")
    if isinstance(mink, dict) and "forget" in mink:
        f = [v["score"] for v in mink["forget"]["value_by_index"].values()]
        h = [v["score"] for v in mink["holdout"]["value_by_index"].values()]
        auc = mia_auc(f, h)
        gaps["mia_min_k_auc"] = _rel([auc], [mink["auc"]])
        if isinstance(ou.get("privleak"), dict) and ou["privleak"].get("agg_value") is not None:
            gaps["privleak"] = _rel([privleak(auc, 0.5)], [ou["privleak"]["agg_value"]])
    return gaps


def _rel(ours, theirs) -> float:
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


__all__ = ["SPLITS", "compare", "generation_agreement", "load_eval", "metric_parity", "per_example_pairs"]
