"""The TOFU evaluation suite (METRICS.md), for any ``LanguageModel``: edited model or guard.

Forget set: Prob, ROUGE-L recall, truth ratio, extraction strength, keyword
accuracy (leak rate). Retain, real_authors, world_facts: Prob, ROUGE, truth ratio
→ model utility (harmonic mean of 9). MIA forget vs holdout: LOSS, Zlib, Min-K%,
Min-K%++ AUCs. With a reference result of the retain model: forget quality (KS
p-value) and privleak.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unlearnkit.evaluation import mia
from unlearnkit.evaluation.extraction import extraction_strength
from unlearnkit.evaluation.forget_quality import forget_quality
from unlearnkit.evaluation.keywords import answer_keywords, keyword_hit
from unlearnkit.evaluation.probability import mc_prob_score
from unlearnkit.evaluation.rouge import rouge_l_recall
from unlearnkit.evaluation.scoring import ScoreCache
from unlearnkit.evaluation.truth_ratio import forget_truth_ratio_score, retain_truth_ratio_score, truth_ratio
from unlearnkit.evaluation.utility import model_utility

PRIVLEAK_ATTACK = "min_k"


@dataclass
class EvalConfig:
    max_new_tokens: int = 200
    batch_size: int = 16
    gen_batch_size: int = 8
    min_k: float = 0.4
    generate: bool = True


def _utility_name(split: str) -> str:
    return split.removesuffix("_perturbed")


def evaluate_tofu(model, task, reference: dict | None = None, config: EvalConfig | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``task`` (a ``TaskData``); ``reference`` = the retain model's result."""
    cfg = config or EvalConfig()
    t0 = time.perf_counter()
    cache = ScoreCache(model, cfg.batch_size)
    qa_sets = {"forget": task.forget_eval, "retain": task.retain_eval}
    for records in qa_sets.values():
        for r in records:
            cache.want(r.question, r.answer)
            cache.want(r.question, r.paraphrased_answer)
            for p in r.perturbed_answers:
                cache.want(r.question, p)
    for records in task.general_evals.values():
        for r in records:
            cache.want(r.question, r.answer)
            for p in r.perturbed_answers:
                cache.want(r.question, p)
    for r in list(task.forget) + list(task.holdout):
        cache.want(r.question, r.answer)
    cache.run(progress=f"scoring {model.name}")

    generations: dict[str, list[str]] = {}
    if cfg.generate:
        for split, records in [*qa_sets.items(), *task.general_evals.items()]:
            generations[split] = model.generate([r.question for r in records], max_new_tokens=cfg.max_new_tokens,
                                                batch_size=cfg.gen_batch_size, progress=f"generating {split}")

    per_example: dict[str, list[dict]] = {}
    summary: dict[str, float | None] = {}
    utility_parts: dict[str, float] = {}

    for split, records in qa_sets.items():
        rows = []
        for i, r in enumerate(records):
            s = cache[(r.question, r.answer)]
            ratio = truth_ratio(cache[(r.question, r.paraphrased_answer)],
                                [cache[(r.question, p)] for p in r.perturbed_answers])
            row = {"question": r.question, "answer": r.answer, "prob": s.prob, "truth_ratio": ratio,
                   "extraction_strength": extraction_strength(s.argmax_match)}
            if generations:
                gen = generations[split][i]
                keys = answer_keywords(r.answer, r.keywords)
                row.update(generation=gen, rouge=rouge_l_recall(gen, r.answer), keywords=list(keys),
                           keyword_hit=keyword_hit(gen, keys))
            rows.append(row)
        per_example[split] = rows
        ratios = [row["truth_ratio"] for row in rows]
        summary[f"{split}_prob"] = _mean(row["prob"] for row in rows)
        summary[f"{split}_truth_ratio"] = (forget_truth_ratio_score(ratios) if split == "forget"
                                           else retain_truth_ratio_score(ratios))
        summary[f"{split}_rouge"] = _mean(row["rouge"] for row in rows) if generations else None
        summary[f"{split}_extraction_strength"] = _mean(row["extraction_strength"] for row in rows)
        if generations:
            summary[f"{split}_keyword_accuracy"] = _mean(float(row["keyword_hit"]) for row in rows)
    utility_parts.update(retain_prob=summary["retain_prob"], retain_truth_ratio=summary["retain_truth_ratio"])
    if generations:
        utility_parts["retain_rouge"] = summary["retain_rouge"]

    for split, records in task.general_evals.items():
        name = _utility_name(split)
        rows = []
        for i, r in enumerate(records):
            s = cache[(r.question, r.answer)]
            perturbed = [cache[(r.question, p)] for p in r.perturbed_answers]
            row = {"question": r.question, "answer": r.answer,
                   "prob": mc_prob_score([s], [perturbed]), "truth_ratio": truth_ratio(s, perturbed)}
            if generations:
                gen = generations[split][i]
                row.update(generation=gen, rouge=rouge_l_recall(gen, r.answer))
            rows.append(row)
        per_example[name] = rows
        summary[f"{name}_prob"] = _mean(row["prob"] for row in rows)
        summary[f"{name}_truth_ratio"] = retain_truth_ratio_score([row["truth_ratio"] for row in rows])
        summary[f"{name}_rouge"] = _mean(row["rouge"] for row in rows) if generations else None
        for metric in ("prob", "truth_ratio", "rouge"):
            if summary[f"{name}_{metric}"] is not None:
                utility_parts[f"{name}_{metric}"] = summary[f"{name}_{metric}"]
    summary["model_utility"] = model_utility(utility_parts)

    mia_rows = {}
    if task.holdout:
        members = [cache[(r.question, r.answer)] for r in task.forget]
        nonmembers = [cache[(r.question, r.answer)] for r in task.holdout]
        member_texts = [r.answer for r in task.forget]
        nonmember_texts = [r.answer for r in task.holdout]
        for attack, fn in mia.ATTACKS.items():
            m = [fn(s, text, k=cfg.min_k) for s, text in zip(members, member_texts)]
            n = [fn(s, text, k=cfg.min_k) for s, text in zip(nonmembers, nonmember_texts)]
            summary[f"mia_{attack}_auc"] = mia.mia_auc(m, n)
            mia_rows[attack] = {"forget": m, "holdout": n}
        per_example["mia"] = mia_rows  # type: ignore[assignment]

    summary["seconds"] = time.perf_counter() - t0
    result = {
        "suite": "tofu",
        "model": model.describe(),
        "task": {"root": str(task.root), **asdict(task.splits),
                 "sizes": {"forget": len(task.forget), "retain": len(task.retain), "holdout": len(task.holdout),
                           "forget_eval": len(task.forget_eval), "retain_eval": len(task.retain_eval),
                           **{k: len(v) for k, v in task.general_evals.items()}}},
        "config": asdict(cfg),
        "summary": summary,
        "per_example": per_example,
    }
    return add_reference_metrics(result, reference) if reference is not None else result


def add_reference_metrics(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Forget quality (KS vs the retain model's forget truth ratios) and privleak (vs its MIA AUC).

    Needs only the per-example values of both results, so it never re-runs the model.
    """
    summary = result["summary"]
    ref_ratios = [row["truth_ratio"] for row in reference["per_example"]["forget"]]
    summary["forget_quality"] = forget_quality([row["truth_ratio"] for row in result["per_example"]["forget"]],
                                               ref_ratios)
    auc, ref_auc = summary.get(f"mia_{PRIVLEAK_ATTACK}_auc"), reference["summary"].get(f"mia_{PRIVLEAK_ATTACK}_auc")
    if auc is not None and ref_auc is not None:
        summary["privleak"] = mia.privleak(auc, ref_auc)
    result["reference"] = reference.get("model", {}).get("name")
    return result


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
