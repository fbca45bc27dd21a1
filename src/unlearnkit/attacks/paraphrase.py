"""Paraphrase attack: TOFU's ``paraphrased_question`` instead of the question itself."""

from __future__ import annotations

from unlearnkit.attacks.base import Attack, AttackSkipped


class Paraphrase(Attack):
    """Ask the forget question in other words (the record's ``paraphrased_question``).

    Records without a paraphrase are left out (``None``); when no record has one the
    attack is skipped. No randomness: the seed does not change the prompts.
    """

    name = "paraphrase"
    summary = "TOFU's paraphrased_question"

    def build(self, records, seed=0):
        prompts = [r.paraphrased_question if r.paraphrased_question and r.paraphrased_question.strip()
                   and r.paraphrased_question.strip() != r.question.strip() else None for r in records]
        if records and all(p is None for p in prompts):
            raise AttackSkipped("no record has a paraphrased_question (TOFU data has them; the built-in "
                                "benchmark may not)")
        return prompts
