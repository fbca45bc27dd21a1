"""Evaluation attacks: ask the forget questions in ways an unlearned model or guard should still resist.

``run_attacks(model, forget_records, attacks, retain_records)`` scores each attack with the
leak metric of plain queries (keyword accuracy, ROUGE-L recall); ``ATTACKS`` lists them.
"""

from unlearnkit.attacks.base import (
                                     ATTACKS,
                                     DEFAULT_ATTACKS,
                                     Attack,
                                     AttackContext,
                                     AttackSkipped,
                                     attack_names,
                                     build_attack,
                                     get_attack_class,
                                     run_attacks,
                                     score_generations,
)

__all__ = ["ATTACKS", "DEFAULT_ATTACKS", "Attack", "AttackContext", "AttackSkipped", "attack_names", "build_attack",
           "get_attack_class", "run_attacks", "score_generations"]
