"""The question/answer record every part of unlearnkit passes around."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class QARecord:
    """One question/answer pair, with the optional fields TOFU-style evaluation uses.

    ``paraphrased_answer`` and ``perturbed_answers`` feed the truth ratio;
    ``paraphrased_question`` feeds the paraphrase attack; ``subject`` names the
    entity the record is about (the person for TOFU-style data), which guards
    and keyword metrics use; ``keywords`` are the answer's key terms (when
    absent, evaluation derives them from the answer).
    """

    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    paraphrased_question: str | None = None
    subject: str | None = None
    keywords: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The Hugging Face export form (TOFU field names), dropping empty fields."""
        out: dict[str, Any] = {"question": self.question, "answer": self.answer}
        if self.paraphrased_answer is not None:
            out["paraphrased_answer"] = self.paraphrased_answer
        if self.perturbed_answers:
            out["perturbed_answer"] = list(self.perturbed_answers)
        if self.paraphrased_question is not None:
            out["paraphrased_question"] = self.paraphrased_question
        if self.subject is not None:
            out["subject"] = self.subject
        if self.keywords:
            out["keywords"] = list(self.keywords)
        out.update(self.meta)
        return out


def as_dicts(records: list[QARecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]
