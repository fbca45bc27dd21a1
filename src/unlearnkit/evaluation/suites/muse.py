"""MUSE (News / Books): VerbMem, KnowMem and PrivLeak (docs/metrics.md), as the MUSE benchmark computes them.

* **VerbMem** (``verbmem/forget``: fields ``prompt``, ``gt``): greedy continuation of the raw
  ``prompt`` (``chat=False``, 128 new tokens), ROUGE-L F1 against ``gt``; mean.
* **KnowMem** (``knowmem/forget_qa`` and ``knowmem/retain_qa``: fields ``question``, ``answer``;
  in-context examples from ``*_qa_icl`` when present): the few-shot prompt
  ``"Question: {q}\\nAnswer: {a}\\n\\n"`` per example + ``"Question: {question}\\nAnswer: "``, greedy
  32 new tokens, cut at the first blank line (and, as MUSE does, before "\\nQuestion" / "Question:"),
  ROUGE-L F1 against ``answer``; mean. Forget should fall, retain should stay.
* **PrivLeak** (``privleak/forget`` and ``privleak/holdout``: records with ``text``, or plain
  strings): Min-K% (k = 0.4) membership scores of each text, ROC AUC forget vs holdout
  (``evaluation.mia``), and ``privleak = ((1−AUC) − (1−AUC_retain)) / (1−AUC_retain) × 100``
  against the retain model's AUC (``reference`` result or ``retain_auc``). Every token after the
  text's first word is scored (the first word is the context); the appended EOS is left out.

ROUGE-L is ``evaluation.rouge.rouge_l_f1`` (rouge_score with stemming, as OpenUnlearning's MUSE
evaluation computes it; the original MUSE scripts score without stemming).

Files: ``ROOT/verbmem/forget.jsonl`` (or ``.json`` / ``.parquet`` / HF shards
``verbmem/forget-00000-of-00001.parquet``) or flat ``ROOT/verbmem_forget.jsonl``; likewise
``knowmem/{forget_qa,retain_qa,forget_qa_icl,retain_qa_icl}`` and ``privleak/{forget,holdout}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.evaluation import mia
from unlearnkit.evaluation.rouge import rouge_l_f1
from unlearnkit.evaluation.suites import (
    appends_eos,
    as_name_list,
    drop_last_token,
    existing_path,
    find_split_files,
    load_reference,
    make_result,
    mean,
    read_rows,
    require_text,
)
from unlearnkit.options import option, takes_options

VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
PRIVLEAK_ATTACK = "min_k"
PARTS = ("verbmem", "knowmem", "privleak")
KNOWMEM_STOPS = ("\nQuestion", "Question:")  # MUSE's get_prefix_before_words_occur, after "\n\n"
_BLANK_LINE = re.compile(r"\n[ \t]*\n")

# (subdirectory, split name) candidates of each file, first found wins
LAYOUT: dict[str, list[tuple[str, str]]] = {
    "verbmem_forget": [("verbmem", "forget"), ("", "verbmem_forget")],
    "knowmem_forget_qa": [("knowmem", "forget_qa"), ("", "knowmem_forget_qa"), ("", "forget_qa")],
    "knowmem_retain_qa": [("knowmem", "retain_qa"), ("", "knowmem_retain_qa"), ("", "retain_qa")],
    "knowmem_forget_qa_icl": [("knowmem", "forget_qa_icl"), ("", "knowmem_forget_qa_icl"), ("", "forget_qa_icl")],
    "knowmem_retain_qa_icl": [("knowmem", "retain_qa_icl"), ("", "knowmem_retain_qa_icl"), ("", "retain_qa_icl")],
    "privleak_forget": [("privleak", "forget"), ("", "privleak_forget")],
    "privleak_holdout": [("privleak", "holdout"), ("", "privleak_holdout")],
}
PART_FILES = {"verbmem": ("verbmem_forget",), "knowmem": ("knowmem_forget_qa", "knowmem_retain_qa"),
              "privleak": ("privleak_forget", "privleak_holdout")}


@dataclass
class MuseData:
    verbmem: list[tuple[str, str]] = field(default_factory=list)        # (prompt, gt)
    forget_qa: list[tuple[str, str]] = field(default_factory=list)      # (question, answer)
    retain_qa: list[tuple[str, str]] = field(default_factory=list)
    forget_icl: list[tuple[str, str]] = field(default_factory=list)
    retain_icl: list[tuple[str, str]] = field(default_factory=list)
    privleak_forget: list[str] = field(default_factory=list)
    privleak_holdout: list[str] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)


# -- prompts and answers ------------------------------------------------------------------------
def knowmem_prompt(question: str, icl: Sequence[tuple[str, str]] = ()) -> str:
    """MUSE's few-shot KnowMem prompt (note the trailing space after "Answer:")."""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in icl)
    return shots + f"Question: {question}\nAnswer: "


def cut_at_blank_line(text: str) -> str:
    """The generated answer up to the first blank line, and before a new "Question" as MUSE cuts it."""
    text = _BLANK_LINE.split(text, maxsplit=1)[0]
    for stop in KNOWMEM_STOPS:
        text = text.split(stop)[0]
    return text.strip()


def split_first_word(text: str) -> tuple[str, str]:
    """(first word, the rest with its leading whitespace): the context and the scored tokens of a text."""
    stripped = text.strip()
    m = re.match(r"\S+", stripped)
    rest = stripped[m.end():] if m else ""
    if not m or not rest.strip():
        raise DataError(f"a PrivLeak text needs at least two words to score (got {text[:60]!r})")
    return m.group(0), rest


# -- loading ------------------------------------------------------------------------------------
def _files(root: Path, key: str) -> list[Path]:
    for sub, name in LAYOUT[key]:
        files = find_split_files(root, name, (sub,))
        if files:
            return files
    return []


def _expected(key: str) -> str:
    return " or ".join(f"{sub + '/' if sub else ''}{name}.jsonl" for sub, name in LAYOUT[key])


def _pairs(files: list[Path], first: str, second: str, limit: int | None) -> list[tuple[str, str]]:
    expected = f"{first} (str), {second} (str)"
    out = [(require_text(loc, row, first, expected), require_text(loc, row, second, expected))
           for f in files for loc, row in read_rows(f)]
    return out[:limit] if limit is not None else out


def _texts(files: list[Path], limit: int | None) -> list[str]:
    out = []
    for f in files:
        for loc, row in read_rows(f):
            out.append(row if isinstance(row, str) and row.strip() else require_text(loc, row, "text", "text (str)"))
    return out[:limit] if limit is not None else out


def load_muse(path: str | Path, parts: Sequence[str] | str | None = None, limit: int | None = None) -> tuple[MuseData,
                                                                                                             list[str]]:
    """The MUSE files under ``path`` and the parts they allow (all present ones when ``parts`` is None)."""
    root = existing_path(path, "MUSE data")
    if not root.is_dir():
        raise DataError(f"MUSE data '{root}' is a file: give the directory holding verbmem/, knowmem/ and privleak/")
    wanted = as_name_list("parts", parts)
    for p in wanted or []:
        if p not in PARTS:
            raise ConfigError(f"unknown MUSE part '{p}': the parts are {', '.join(PARTS)}")
    found = {key: _files(root, key) for key in LAYOUT}
    if wanted is None:
        wanted = [p for p in PARTS if all(found[k] for k in PART_FILES[p])]
        if not wanted:
            listing = "; ".join(f"{p}: {', '.join(_expected(k) for k in PART_FILES[p])}" for p in PARTS)
            raise DataError(f"no MUSE data in '{root}': expected {listing}")
    for p in wanted:
        missing = [k for k in PART_FILES[p] if not found[k]]
        if missing:
            raise DataError(f"MUSE part '{p}' needs {', '.join(_expected(k) for k in missing)} in '{root}': add the "
                            f"file(s) or leave '{p}' out of parts")
    data = MuseData(files={k: [str(f) for f in v] for k, v in found.items() if v})
    if "verbmem" in wanted:
        data.verbmem = _pairs(found["verbmem_forget"], "prompt", "gt", limit)
    if "knowmem" in wanted:
        data.forget_qa = _pairs(found["knowmem_forget_qa"], "question", "answer", limit)
        data.retain_qa = _pairs(found["knowmem_retain_qa"], "question", "answer", limit)
        if found["knowmem_forget_qa_icl"]:
            data.forget_icl = _pairs(found["knowmem_forget_qa_icl"], "question", "answer", None)
        if found["knowmem_retain_qa_icl"]:
            data.retain_icl = _pairs(found["knowmem_retain_qa_icl"], "question", "answer", None)
    if "privleak" in wanted:
        data.privleak_forget = _texts(found["privleak_forget"], limit)
        data.privleak_holdout = _texts(found["privleak_holdout"], limit)
    loaded = {"verbmem_forget": data.verbmem, "knowmem_forget_qa": data.forget_qa,
              "knowmem_retain_qa": data.retain_qa, "privleak_forget": data.privleak_forget,
              "privleak_holdout": data.privleak_holdout}
    for p in wanted:
        for key in PART_FILES[p]:
            if not loaded[key]:
                raise DataError(f"MUSE file {found[key][0]} is empty: it must hold at least one record")
    return data, list(wanted)


# -- metrics ------------------------------------------------------------------------------------
def text_scores(model, texts: Sequence[str], batch_size: int = 8):
    """Teacher-forced scores of every token after each text's first word (``chat=False``, no EOS)."""
    pairs = [split_first_word(t) for t in texts]
    scores = model.score([p for p, _ in pairs], [r for _, r in pairs], chat=False, batch_size=batch_size)
    return [drop_last_token(s) for s in scores] if appends_eos(model) else scores


def privleak_from(auc: float, reference: dict | None = None, retain_auc: float | None = None) -> float | None:
    if retain_auc is None and reference is not None:
        retain_auc = reference.get("summary", {}).get(f"mia_{PRIVLEAK_ATTACK}_auc")
    return None if retain_auc is None else mia.privleak(auc, retain_auc)


def add_reference_metrics(result: dict, reference: dict | str | Path) -> dict:
    """PrivLeak of a MUSE result against the retain model's MUSE result (no model run)."""
    ref = load_reference(reference)
    auc = result["summary"].get(f"mia_{PRIVLEAK_ATTACK}_auc")
    if auc is not None:
        result["summary"]["privleak"] = privleak_from(auc, ref)
    result["reference"] = ref.get("model", {}).get("name")
    return result


@dataclass
class MUSEOptions:
    parts: tuple[str, ...] | None = option(None, "parts to run, comma-separated (default: every one present)",
                                           choices=PARTS)
    reference: dict | str | Path | None = option(None, "the retain model's MUSE result (dict or JSON path), for "
                                                       "PrivLeak; not with retain_auc")
    retain_auc: float | None = option(None, "the retain model's Min-k AUC, for PrivLeak; not with reference",
                                      minimum=0, maximum=1, exclusive_maximum=True)
    verbmem_max_new_tokens: int = option(VERBMEM_MAX_NEW_TOKENS, "VerbMem generation length", minimum=1)
    knowmem_max_new_tokens: int = option(KNOWMEM_MAX_NEW_TOKENS, "KnowMem generation length", minimum=1)
    icl_examples: int | None = option(None, "KnowMem in-context examples (none = the data's own)", minimum=0)
    min_k: float = option(mia.DEFAULT_K, "k of Min-k% Prob for PrivLeak", minimum=0, maximum=1,
                          exclusive_minimum=True)
    limit: int | None = option(None, "records per split at most (none = all)", minimum=1)
    batch_size: int = option(8, "sequences per scoring forward", minimum=1)
    gen_batch_size: int = option(8, "generation slots", minimum=1)
    chat: bool = option(False, "wrap prompts in the model's chat template")


@takes_options(MUSEOptions, "suite 'muse'")
def evaluate_muse(model, data_path, *, parts: Sequence[str] | str | None = None,
                  reference: dict | str | Path | None = None, retain_auc: float | None = None,
                  verbmem_max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS,
                  knowmem_max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS, icl_examples: int | None = None,
                  min_k: float = mia.DEFAULT_K, limit: int | None = None, batch_size: int = 8,
                  gen_batch_size: int = 8, chat: bool = False) -> dict:
    """MUSE VerbMem (ROUGE-L F1), KnowMem forget / retain (ROUGE-L F1) and PrivLeak (Min-40% AUC vs retain)."""
    if reference is not None and retain_auc is not None:
        raise ConfigError("give either reference (the retain model's MUSE result) or retain_auc, not both")
    ref = load_reference(reference)
    t0 = time.perf_counter()
    data, used = load_muse(data_path, parts, limit)
    summary: dict[str, float | int | None] = {}
    per_example: dict = {}

    if "verbmem" in used:
        gens = model.generate([p for p, _ in data.verbmem], chat=chat, max_new_tokens=verbmem_max_new_tokens,
                              batch_size=gen_batch_size, progress="MUSE verbmem")
        rows = [{"prompt": p, "gt": gt, "generation": g, "rouge_f1": rouge_l_f1(g, gt)}
                for (p, gt), g in zip(data.verbmem, gens)]
        per_example["verbmem_forget"] = rows
        summary["verbmem_forget_rouge_f1"] = mean(r["rouge_f1"] for r in rows)

    if "knowmem" in used:
        for split, qa, icl in (("forget", data.forget_qa, data.forget_icl), ("retain", data.retain_qa,
                                                                              data.retain_icl)):
            shots = icl if icl_examples is None else icl[:icl_examples]
            prompts = [knowmem_prompt(q, shots) for q, _ in qa]
            gens = model.generate(prompts, chat=chat, max_new_tokens=knowmem_max_new_tokens,
                                  batch_size=gen_batch_size, progress=f"MUSE knowmem {split}")
            rows = []
            for (q, a), g in zip(qa, gens):
                answer = cut_at_blank_line(g)
                rows.append({"question": q, "answer": a, "generation": g, "cut": answer,
                             "rouge_f1": rouge_l_f1(answer, a)})
            per_example[f"knowmem_{split}"] = rows
            summary[f"knowmem_{split}_rouge_f1"] = mean(r["rouge_f1"] for r in rows)
            summary[f"knowmem_{split}_icl_examples"] = len(shots)

    if "privleak" in used:
        member = text_scores(model, data.privleak_forget, batch_size)
        nonmember = text_scores(model, data.privleak_holdout, batch_size)
        mia_rows = {}
        for attack, fn in mia.ATTACKS.items():
            m = [fn(s, t, k=min_k) for s, t in zip(member, data.privleak_forget)]
            n = [fn(s, t, k=min_k) for s, t in zip(nonmember, data.privleak_holdout)]
            summary[f"mia_{attack}_auc"] = mia.mia_auc(m, n)
            mia_rows[attack] = {"forget": m, "holdout": n}
        per_example["mia"] = mia_rows
        summary["privleak"] = privleak_from(summary[f"mia_{PRIVLEAK_ATTACK}_auc"], ref, retain_auc)

    summary["seconds"] = time.perf_counter() - t0
    sizes = {"verbmem_forget": len(data.verbmem), "knowmem_forget_qa": len(data.forget_qa),
             "knowmem_retain_qa": len(data.retain_qa), "knowmem_forget_qa_icl": len(data.forget_icl),
             "knowmem_retain_qa_icl": len(data.retain_icl), "privleak_forget": len(data.privleak_forget),
             "privleak_holdout": len(data.privleak_holdout)}
    config = {"parts": used, "verbmem_max_new_tokens": verbmem_max_new_tokens,
              "knowmem_max_new_tokens": knowmem_max_new_tokens, "icl_examples": icl_examples, "min_k": min_k,
              "limit": limit, "batch_size": batch_size, "gen_batch_size": gen_batch_size, "chat": chat,
              "retain_auc": retain_auc}
    result = make_result("muse", model, {"path": str(data_path), "files": data.files, "sizes": sizes}, config,
                         summary, per_example)
    if ref is not None:
        result["reference"] = ref.get("model", {}).get("name")
    return result


__all__ = ["MUSEOptions", "KNOWMEM_MAX_NEW_TOKENS", "LAYOUT", "MuseData", "VERBMEM_MAX_NEW_TOKENS", "add_reference_metrics",
           "cut_at_blank_line", "evaluate_muse", "knowmem_prompt", "load_muse", "split_first_word", "text_scores"]
