"""Answers side by side: what each method says to a few forget, retain and general questions.

A KS p-value says *that* a model forgot; this shows *what*: the gold answer, each model's generation, and
whether the generation still holds the answer's keywords (``evaluation/keywords.py``: every key term of the
gold answer present → a hit, marked ✓). Questions are spread evenly over each split, the same for every model.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from unlearnkit.evaluation.keywords import answer_keywords, keyword_hit, keyword_spans

SPLITS = ("forget", "retain", "real_authors", "world_facts")


def _pick(n_total: int, n: int) -> list[int]:
    return sorted({(i * n_total) // n for i in range(min(n, n_total))}) if n_total else []


def build_evidence(evals: Mapping[str, Mapping], per_split: int = 4, max_chars: int = 300) -> dict:
    """``evals``: model name → TOFU evaluation result (with ``per_example`` generations)."""
    out: dict[str, list[dict]] = {}
    first = next(iter(evals.values()), None)
    if first is None or per_split < 1:
        return {"kind": "evidence", "splits": {}}
    for split in SPLITS:
        rows = first.get("per_example", {}).get(split) or []
        items = []
        for i in _pick(len(rows), per_split):
            gold = rows[i]
            keywords = tuple(gold.get("keywords") or answer_keywords(gold["answer"]))
            answers = {}
            for name, result in evals.items():
                ex = (result.get("per_example", {}).get(split) or [])
                if i >= len(ex) or ex[i].get("question") != gold["question"] or ex[i].get("generation") is None:
                    continue
                text = ex[i]["generation"]
                answers[name] = {"text": text[:max_chars], "hit": keyword_hit(text, keywords)}
            items.append({"question": gold["question"], "gold": gold["answer"], "keywords": list(keywords),
                          "answers": answers})
        if items:
            out[split] = items
    return {"kind": "evidence", "splits": out}


def _marked(text: str, keywords: list[str]) -> str:
    """HTML of ``text`` with each keyword's first occurrence in <mark>."""
    norm = " ".join(text.split())
    spans = sorted(s for s in keyword_spans(norm, keywords) if s is not None)
    parts, last = [], 0
    for a, b in spans:
        if a < last:
            continue
        parts += [html.escape(norm[last:a]), f"<mark>{html.escape(norm[a:b])}</mark>"]
        last = b
    parts.append(html.escape(norm[last:]))
    return "".join(parts)


def evidence_html(evidence: Mapping) -> str:
    parts = []
    for split, items in evidence.get("splits", {}).items():
        parts.append(f"<h3>{html.escape(split)}</h3>")
        for item in items:
            kws = item["keywords"]
            rows = [f"<tr><td><b>gold</b></td><td>{_marked(item['gold'], kws)}</td><td></td></tr>"]
            for name, a in item["answers"].items():
                rows.append(f"<tr><td>{html.escape(name)}</td><td>{_marked(a['text'], kws)}</td>"
                            f"<td>{'✓ keywords' if a['hit'] else '–'}</td></tr>")
            parts.append(f"<p><b>Q:</b> {html.escape(item['question'])} <span class=\"meta\">(keywords: "
                         f"{html.escape(', '.join(kws))})</span></p><table>{''.join(rows)}</table>")
    if not parts:
        return ""
    return ("<h2>Answers side by side</h2><p class=\"meta\">Keywords of the gold answer are marked; ✓: the answer "
            "holds every keyword (for a forget question, a leak).</p>" + "\n".join(parts))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def evidence_markdown(evidence: Mapping) -> str:
    out = []
    for split, items in evidence.get("splits", {}).items():
        out.append(f"### {split}\n")
        for item in items:
            out.append(f"**Q:** {_cell(item['question'])} (keywords: {_cell(', '.join(item['keywords']))})\n")
            out.append("| model | answer | keywords |\n|---|---|---|")
            out.append(f"| gold | {_cell(item['gold'])} | |")
            for name, a in item["answers"].items():
                out.append(f"| {name} | {_cell(a['text'])} | {'✓' if a['hit'] else '–'} |")
            out.append("")
    return ("\n## Answers side by side\n\n✓: the answer holds every keyword of the gold answer (for a forget "
            "question, a leak).\n\n" + "\n".join(out)) if out else ""
