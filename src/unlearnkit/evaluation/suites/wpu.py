"""WPU (Wikipedia Person Unlearn): forget / hard-retain / general-retain QA about real people (docs/metrics.md).

Per split, TOFU-style **Prob** (mean normalised answer probability P̃(answer|question),
``evaluation.probability.qa_prob_score``) and **ROUGE** (greedy generation, up to 200 new tokens,
ROUGE-L recall against the answer, ``evaluation.rouge``). **Model utility** = harmonic mean
(``evaluation.utility.model_utility``) of Prob and ROUGE over the two retain splits. **Leak rate** =
keyword accuracy of the forget-split generations (``evaluation.keywords``: the record's
``keywords`` when given, else the answer's key terms); retain splits report their keyword
accuracy too (it should stay high).

Data: a directory of splits in the Hugging Face export format (``question``, ``answer``, optional
``keywords`` / ``subject``), read by ``unlearnkit.data.load_split``: ``forget.jsonl``,
``hard_retain.parquet``, ``forget_100/train-00000-of-00001.parquet``, ... The split names are
options; when the default ``forget`` is absent and exactly one ``forget*`` split exists it is used,
and ``hard_retain`` falls back to ``{forget}_hard_retain`` (the Hugging Face WPU naming).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.errors import DataError
from unlearnkit.evaluation.keywords import answer_keywords, keyword_hit
from unlearnkit.evaluation.probability import qa_prob_score
from unlearnkit.evaluation.rouge import rouge_l_recall
from unlearnkit.evaluation.suites import existing_path, make_result, mean
from unlearnkit.evaluation.utility import model_utility
from unlearnkit.options import option, takes_options

ROLES = ("forget", "hard_retain", "general_retain")
RETAIN_ROLES = ("hard_retain", "general_retain")


def resolve_splits(root: Path, forget: str, hard_retain: str, general_retain: str) -> dict[str, str]:
    """Role → split name, with the fallbacks of the module docstring; DataError listing the splits there."""
    from unlearnkit.data.loading import available_splits

    have = available_splits(root)
    names = {"forget": forget, "hard_retain": hard_retain, "general_retain": general_retain}
    if names["forget"] not in have:
        candidates = [s for s in have if s.startswith("forget") and not s.endswith("retain")]
        if forget == "forget" and len(candidates) == 1:
            names["forget"] = candidates[0]
    if names["hard_retain"] not in have and hard_retain == "hard_retain" \
            and f"{names['forget']}_hard_retain" in have:
        names["hard_retain"] = f"{names['forget']}_hard_retain"
    for role, name in names.items():
        if name not in have:
            listing = ", ".join(have) or "none"
            raise DataError(f"WPU {role.replace('_', '-')} split '{name}' not found in '{root}' (splits there: "
                            f"{listing}): name it with the option {role}_split, or add {name}.jsonl with fields "
                            "question, answer (optional keywords)")
    return names


@dataclass
class WPUOptions:
    forget_split: str = option("forget", "split of forget questions")
    hard_retain_split: str = option("hard_retain", "split of hard-retain questions")
    general_retain_split: str = option("general_retain", "split of general-retain questions")
    limit: int | None = option(None, "records per split at most (none = all)", minimum=1)
    max_new_tokens: int = option(200, "answer length", minimum=1)
    batch_size: int = option(16, "answers per scoring forward", minimum=1)
    gen_batch_size: int = option(8, "generation slots", minimum=1)
    generate: bool = option(True, "generate answers (ROUGE and the leak rate); off = probabilities only")
    chat: bool = option(True, "wrap prompts in the model's chat template")


@takes_options(WPUOptions, "suite 'wpu'")
def evaluate_wpu(model, data_path, *, forget_split: str = "forget", hard_retain_split: str = "hard_retain",
                 general_retain_split: str = "general_retain", limit: int | None = None, max_new_tokens: int = 200,
                 batch_size: int = 16, gen_batch_size: int = 8, generate: bool = True, chat: bool = True) -> dict:
    """WPU Prob and ROUGE per split, model utility over the retain splits, and the forget leak rate."""
    from unlearnkit.data.loading import read_split

    root = existing_path(data_path, "WPU data directory")
    if not root.is_dir():
        raise DataError(f"WPU data '{root}' is a file: give the directory holding the forget, hard-retain and "
                        "general-retain splits")
    t0 = time.perf_counter()
    names = resolve_splits(root, forget_split, hard_retain_split, general_retain_split)
    records = {role: read_split(root, names[role], limit) for role in ROLES}

    summary: dict[str, float | int | None] = {}
    per_example: dict[str, list[dict]] = {}
    for role in ROLES:
        recs = records[role]
        scores = model.score([r.question for r in recs], [r.answer for r in recs], chat=chat,
                             batch_size=batch_size, progress=f"WPU scoring {role}")
        rows = [{"question": r.question, "answer": r.answer, "prob": s.prob} for r, s in zip(recs, scores)]
        summary[f"{role}_prob"] = qa_prob_score(scores)
        if generate:
            gens = model.generate([r.question for r in recs], chat=chat, max_new_tokens=max_new_tokens,
                                  batch_size=gen_batch_size, progress=f"WPU generating {role}")
            for row, r, g in zip(rows, recs, gens):
                keys = answer_keywords(r.answer, r.keywords)
                row.update(generation=g, rouge=rouge_l_recall(g, r.answer), keywords=list(keys),
                           keyword_hit=keyword_hit(g, keys))
            summary[f"{role}_rouge"] = mean(row["rouge"] for row in rows)
            summary[f"{role}_keyword_accuracy"] = mean(float(row["keyword_hit"]) for row in rows)
        else:
            summary[f"{role}_rouge"] = None
        per_example[role] = rows
    summary["leak_rate"] = summary.get("forget_keyword_accuracy")
    parts = {f"{role}_{metric}": summary[f"{role}_{metric}"] for role in RETAIN_ROLES
             for metric in ("prob", "rouge") if summary[f"{role}_{metric}"] is not None}
    summary["model_utility"] = model_utility(parts)
    summary["seconds"] = time.perf_counter() - t0
    config = {"splits": names, "limit": limit, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
              "gen_batch_size": gen_batch_size, "generate": generate, "chat": chat,
              "utility_parts": sorted(parts)}
    return make_result("wpu", model, {"path": str(data_path), "sizes": {r: len(records[r]) for r in ROLES}},
                       config, summary, per_example)


__all__ = ["ROLES", "WPUOptions", "evaluate_wpu", "resolve_splits"]
