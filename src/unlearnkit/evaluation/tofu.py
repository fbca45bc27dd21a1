"""The TOFU evaluation suite (docs/metrics.md), for any ``LanguageModel``: edited model or guard.

Forget set: Prob, ROUGE-L recall, truth ratio, extraction strength, keyword
accuracy (leak rate). Retain, real_authors, world_facts: Prob, ROUGE, truth ratio
→ model utility (harmonic mean of 9). MIA forget vs holdout: LOSS, Zlib, Min-K%,
Min-K%++ AUCs. With a reference result of the retain model: forget quality (KS
p-value) and privleak.

``EvalConfig.compat``:

* ``openunlearning`` (default): every definition as OpenUnlearning computes it. Min-K%,
  Min-K%++ and extraction strength read the labels without their final token (its
  ``tokenwise_logprobs`` drops the last label); extraction strength is 1/|y| when no
  suffix matches (its loop leaves k = |y| − 1); Zlib and the ROUGE reference use the
  decoded labels; privleak without a retain result is taken against AUC 0.5, as it prints.
  With the model's ``openunlearning`` labels (``models/chat_format.py``) and system prompt
  the per-example values mean what OpenUnlearning's mean.
* ``unlearnkit``: the textbook definitions: every label token counts, extraction strength
  is 0 when the last token is not predicted, Zlib and ROUGE use the raw answer text.

All questions are generated in one call, so the decoder's slots stay full across splits.
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
from unlearnkit.evaluation.rouge import rouge_1_recall, rouge_l_f1, rouge_l_recall
from unlearnkit.evaluation.scoring import ScoreCache
from unlearnkit.evaluation.truth_ratio import forget_truth_ratio_score, retain_truth_ratio_score, truth_ratio
from unlearnkit.evaluation.utility import model_utility
from unlearnkit.errors import ConfigError

PRIVLEAK_ATTACK = "min_k"


COMPAT_MODES = ("openunlearning", "unlearnkit")
UNREFERENCED_PRIVLEAK_AUC = 0.5  # OpenUnlearning's privleak reference when no retain result is given


@dataclass
class EvalConfig:
    max_new_tokens: int = 200
    batch_size: int = 32  # answers per scoring forward (they share each prompt's KV cache)
    gen_batch_size: int = 64  # decoder slots
    min_k: float = 0.4
    generate: bool = True
    compat: str = "openunlearning"

    def __post_init__(self):
        if self.compat not in COMPAT_MODES:
            raise ConfigError(f"unknown compat mode '{self.compat}': choose one of {', '.join(COMPAT_MODES)}")
        for name in ("max_new_tokens", "batch_size", "gen_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1 (got {value!r})")
        if not 0.0 < self.min_k <= 1.0:
            raise ConfigError(f"min_k must lie in (0, 1] (got {self.min_k!r})")

    @property
    def openunlearning(self) -> bool:
        return self.compat == "openunlearning"


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
    generations: dict[str, list[str]] = {}
    gen_splits = {**qa_sets, **task.general_evals}
    fused = cfg.generate and hasattr(model, "score_and_generate")
    if fused:  # each question's prompt read once, for its answers and its generation
        keys = cache.pending()
        questions = [r.question for records in gen_splits.values() for r in records]
        scores, texts = model.score_and_generate([q for q, _ in keys], [a for _, a in keys], questions,
                                                 max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                                                 gen_batch_size=cfg.gen_batch_size,
                                                 progress=f"scoring + generating {model.name}")
        cache.fill(keys, scores)
        generations = _split_back(gen_splits, texts)
        t_scored = t_generated = time.perf_counter()
    else:
        cache.run(progress=f"scoring {model.name}")
        t_scored = time.perf_counter()
        if cfg.generate:
            generations = _generate_all(gen_splits, model, cfg)
        t_generated = time.perf_counter()

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
                   "extraction_strength": _extraction_strength(s, cfg)}
            if generations:
                gen = generations[split][i]
                keys = answer_keywords(r.answer, r.keywords)
                row.update(generation=gen, **_rouge(gen, _reference_text(s, r.answer, cfg)), keywords=list(keys),
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
                row.update(generation=gen, **_rouge(gen, _reference_text(s, r.answer, cfg)))
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
        for attack in mia.ATTACKS:
            m = [_mia_score(attack, s, r.answer, cfg) for s, r in zip(members, task.forget)]
            n = [_mia_score(attack, s, r.answer, cfg) for s, r in zip(nonmembers, task.holdout)]
            summary[f"mia_{attack}_auc"] = mia.mia_auc(m, n)
            mia_rows[attack] = {"forget": m, "holdout": n}
        per_example["mia"] = mia_rows  # type: ignore[assignment]
        if cfg.openunlearning:
            summary["privleak"] = mia.privleak(summary[f"mia_{PRIVLEAK_ATTACK}_auc"], UNREFERENCED_PRIVLEAK_AUC)
            summary["privleak_reference_auc"] = UNREFERENCED_PRIVLEAK_AUC

    summary["seconds"] = time.perf_counter() - t0
    timings = {"fused": fused, "scoring_seconds": None if fused else t_scored - t0,
               "generation_seconds": None if fused else t_generated - t_scored,
               "scoring_and_generation_seconds": t_generated - t0,
               "pairs_scored": cache.size, "questions_generated": sum(len(v) for v in generations.values())}
    result = {
        "suite": "tofu",
        "model": model.describe(),
        "task": {"root": str(task.root), **asdict(task.splits),
                 "sizes": {"forget": len(task.forget), "retain": len(task.retain), "holdout": len(task.holdout),
                           "forget_eval": len(task.forget_eval), "retain_eval": len(task.retain_eval),
                           **{k: len(v) for k, v in task.general_evals.items()}}},
        "config": asdict(cfg),
        "chat_format": _chat_format(model),
        "summary": summary,
        "timings": timings,
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
        summary["privleak_reference_auc"] = ref_auc
    result["reference"] = reference.get("model", {}).get("name")
    return result


def _generate_all(splits: dict[str, list], model, cfg: EvalConfig) -> dict[str, list[str]]:
    """Every split's questions in one generate call (the decoder refills its slots across splits)."""
    questions = [r.question for records in splits.values() for r in records]
    texts = model.generate(questions, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size,
                           progress=f"generating {model.name}")
    return _split_back(splits, texts)


def _split_back(splits: dict[str, list], texts: list[str]) -> dict[str, list[str]]:
    out, at = {}, 0
    for split, records in splits.items():
        out[split] = texts[at : at + len(records)]
        at += len(records)
    return out


def _ou_tokens(scores):
    """OpenUnlearning's token-wise view of the labels: all but the final one."""
    return scores.without_last()


def _extraction_strength(scores, cfg: EvalConfig) -> float:
    if cfg.openunlearning:
        return extraction_strength(_ou_tokens(scores).argmax_match, match_openunlearning=True)
    return extraction_strength(scores.argmax_match)


def _mia_score(attack: str, scores, answer: str, cfg: EvalConfig) -> float:
    fn = mia.ATTACKS[attack]
    if not cfg.openunlearning:
        return fn(scores, answer, k=cfg.min_k)
    if attack in ("min_k", "min_k_plus_plus"):  # token-wise attacks read labels[:-1]
        return fn(_ou_tokens(scores), answer, k=cfg.min_k)
    return fn(scores, scores.label_text or answer, k=cfg.min_k)  # LOSS: all labels; Zlib: decoded labels


def _reference_text(scores, answer: str, cfg: EvalConfig) -> str:
    if cfg.openunlearning and scores.label_text is not None:
        return scores.label_text.strip()
    return answer


def _rouge(generation: str, reference: str) -> dict[str, float]:
    return {"rouge": rouge_l_recall(generation, reference), "rouge1_recall": rouge_1_recall(generation, reference),
            "rouge_l_f1": rouge_l_f1(generation, reference)}


def _chat_format(model) -> dict | None:
    from unlearnkit.evaluation.suites import hf_backend  # here: suites imports this module

    hf = hf_backend(model)
    fmt = getattr(hf, "chat_format", None)
    return fmt.to_json() if fmt is not None else None


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")
