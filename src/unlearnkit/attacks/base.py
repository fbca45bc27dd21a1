"""The attack interface, the registry and ``run_attacks``.

An attack rewrites each forget question into an *attacked prompt* (a string or a
chat message list); the model answers it and the answer is scored with the same
leak metric as a plain query: keyword accuracy (GRIN's metric = the guards' leak
rate, docs/metrics.md) and ROUGE-L recall against the record's answer.

* ``Attack.build(records, seed)`` returns one prompt per record (``None`` where the
  attack cannot rewrite that record). Same seed, same prompts.
* ``Attack.run(model, records, ctx)`` builds, generates and scores; attacks that
  do more (relearning trains, prompt injection scores target names) override it.
* ``Attack.budget()`` names what sets the attack's cost (samples N, steps, shots k, bits); ``run_attacks``
  records it with the attack's wall seconds in every result, so a cost figure always comes with its budget.
* An attack that cannot run says so: ``AttackSkipped(reason)`` becomes
  ``{"skipped": true, "reason": ...}`` in the result instead of a number.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from unlearnkit.data.records import QARecord
from unlearnkit.errors import ConfigError
from unlearnkit.models.base import LanguageModel, Prompt
from unlearnkit.options import NoOptions, option_specs, read_options

APPLIES_TO = ("weights", "guard", "any")

# name -> "module:Class"; classes import lazily (relearning pulls in the trainer).
ATTACKS: dict[str, str] = {
    "plain": "unlearnkit.attacks.base:Plain",
    "paraphrase": "unlearnkit.attacks.paraphrase:Paraphrase",
    "many_shot": "unlearnkit.attacks.many_shot:ManyShot",
    "target_masking": "unlearnkit.attacks.target_masking:TargetMasking",
    "lang_es": "unlearnkit.attacks.languages:SpanishQuestion",
    "lang_fr": "unlearnkit.attacks.languages:FrenchQuestion",
    "lang_de": "unlearnkit.attacks.languages:GermanQuestion",
    "prefix_injection": "unlearnkit.attacks.templates:PrefixInjection",
    "affirmative_suffix": "unlearnkit.attacks.templates:AffirmativeSuffix",
    "role_play": "unlearnkit.attacks.templates:RolePlay",
    "prompt_injection": "unlearnkit.attacks.prompt_injection:PromptInjection",
    "relearning": "unlearnkit.attacks.relearning:Relearning",
    "few_shot": "unlearnkit.attacks.few_shot:FewShot",
    "best_of_n": "unlearnkit.attacks.best_of_n:BestOfN",
    "format_shift": "unlearnkit.attacks.format_shift:FormatShift",
    "quantize": "unlearnkit.attacks.quantize:Quantize",
    "relearn_disjoint": "unlearnkit.attacks.relearning:RelearnDisjoint",
    "relearn_benign": "unlearnkit.attacks.relearning:RelearnBenign",
    "soft_prompt": "unlearnkit.attacks.soft_prompt:SoftPrompt",
}

# What ``run_attacks`` runs when no list is given (every attack; those that do not
# apply to the model are reported as skipped with the reason).
DEFAULT_ATTACKS: tuple[str, ...] = tuple(ATTACKS)


class AttackSkipped(Exception):
    """The attack cannot run here; the message says why (recorded in the result)."""


@dataclass
class AttackContext:
    """What an attack may need beyond the forget records.

    ``translator`` is any ``LanguageModel`` asked to translate questions (the
    language attacks use it for data without built-in translations);
    ``context_limit`` overrides the model's context length (many-shot).
    """

    model: LanguageModel | None = None
    retain_records: Sequence[QARecord] = ()
    seed: int = 0
    max_new_tokens: int = 64
    batch_size: int = 8
    translator: LanguageModel | None = None
    context_limit: int | None = None
    work_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Attack:
    """One way of asking the forget questions that an unlearned model should still refuse.

    Subclasses set ``name``, ``applies_to`` and ``summary`` and define ``build``; an attack with options
    declares them in an ``Options`` dataclass (``unlearnkit.options``), read and checked by ``build_attack``.
    """

    name: ClassVar[str] = ""
    applies_to: ClassVar[str] = "any"  # "weights" | "guard" | "any"
    summary: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    # per model family ("weights", "guard", "other"), the revision of what this attack measures; a change that
    # alters results for a family raises it there, so cached results of that family are measured again
    revisions: ClassVar[dict[str, int]] = {}

    @classmethod
    def revision(cls, family: str) -> int:
        return cls.revisions.get(family, 1)

    @classmethod
    def from_context(cls, ctx: AttackContext, **options: Any) -> Attack:
        """Build the attack for a run (subclasses pull what they need from ``ctx``)."""
        return cls(**options)

    def build(self, records: Sequence[QARecord], seed: int = 0) -> list[Prompt | None]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"attack": self.name, "applies_to": self.applies_to, "summary": self.summary}

    def budget(self) -> dict[str, Any]:
        """What sets this attack's cost beyond one greedy pass over the questions (none by default)."""
        return {}

    def check_applies(self, model: LanguageModel) -> None:
        family = model_family(model)
        if self.applies_to == "weights" and family != "weights":
            raise AttackSkipped(f"{self.name} edits weights and applies only to weight-editing methods; "
                                f"{model.name} is {'an inference-time guard' if family == 'guard' else 'not weight-backed'}")
        if self.applies_to == "guard" and family != "guard":
            raise AttackSkipped(f"{self.name} attacks inference-time guards (it tries to extract their target "
                                f"list); {model.name} is not a guard")

    def run(self, model: LanguageModel, records: Sequence[QARecord], ctx: AttackContext) -> dict[str, Any]:
        """Build the attacked prompts, generate greedily, score the leak."""
        prompts = self.build(records, ctx.seed)
        if len(prompts) != len(records):
            raise RuntimeError(f"{self.name}.build returned {len(prompts)} prompts for {len(records)} records")
        keep = [i for i, p in enumerate(prompts) if p is not None]
        if not keep:
            raise AttackSkipped(f"{self.name} could not rewrite any of the {len(records)} records")
        used = [records[i] for i in keep]
        gens = model.generate([prompts[i] for i in keep], max_new_tokens=ctx.max_new_tokens,
                              batch_size=ctx.batch_size)
        out = score_generations(used, gens, [prompts[i] for i in keep])
        out["n_records"] = len(records)
        return out


class Plain(Attack):
    """No attack: the forget question as asked (the baseline every attack is compared with)."""

    name = "plain"
    summary = "the forget question itself (baseline)"

    def build(self, records, seed=0):
        return [r.question for r in records]


# -- registry ------------------------------------------------------------------------
def attack_names() -> list[str]:
    return list(ATTACKS)


def get_attack_class(name: str) -> type[Attack]:
    key = name.strip().lower().replace("-", "_")
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack '{name}': choose from {', '.join(ATTACKS)}")
    module, _, attr = ATTACKS[key].partition(":")
    return getattr(importlib.import_module(module), attr)


def build_attack(name: str, ctx: AttackContext | None = None, **options: Any) -> Attack:
    """The attack ``name`` for a run: its options (strings or values) read and checked through its ``Options``.

    Keywords that are not options but inputs of the attack's constructor (a ``pool`` of records) pass through.
    """
    cls = get_attack_class(name)
    specs = option_specs(cls.Options)
    inputs = set(inspect.signature(cls.__init__).parameters) - {"self"}
    passed = {k: v for k, v in options.items() if k not in specs and k in inputs}
    values = read_options(cls.Options, {k: v for k, v in options.items() if k not in passed}, f"attack '{cls.name}'")
    try:
        return cls.from_context(ctx or AttackContext(), **values, **passed)
    except TypeError as exc:
        raise ConfigError(f"attack '{name}' got bad options {sorted(options)}: {exc}") from exc


def model_family(model: LanguageModel) -> str:
    """"guard" for inference-time guards, "weights" for weight-backed models, else "other"."""
    from unlearnkit.methods.guards import Guard

    if isinstance(model, Guard) or hasattr(model, "targets") and hasattr(model, "base"):
        return "guard"
    return "weights" if getattr(model, "editable", False) else "other"


# -- scoring -------------------------------------------------------------------------
def prompt_preview(prompt: Prompt, limit: int = 400) -> str:
    """A short, JSON-friendly view of a prompt (many-shot prefixes are long)."""
    if isinstance(prompt, str):
        text = prompt
    else:
        msgs = list(prompt)
        last = msgs[-1].get("content", "") if msgs else ""
        text = f"[{len(msgs)} messages] … {last}"
    return text if len(text) <= limit else text[: limit // 2] + " … " + text[-limit // 2:]


def score_generations(records: Sequence[QARecord], generations: Sequence[str],
                      prompts: Sequence[Prompt] | None = None,
                      alternatives: Sequence[Sequence[Sequence[str]]] | None = None) -> dict[str, Any]:
    """Leak rate (keyword accuracy) and mean ROUGE-L recall of answers to ``records``, per example kept.

    ``alternatives`` (per record, optional): other keyword sets that also count as a hit,
    e.g. the answer's value translated for an answer in another language.
    """
    from unlearnkit.evaluation.keywords import answer_keywords, keyword_hit
    from unlearnkit.evaluation.rouge import rouge_l_recall

    if len(records) != len(generations):
        raise ValueError(f"{len(records)} records but {len(generations)} generations")
    rows = []
    for i, (r, g) in enumerate(zip(records, generations)):
        keys = answer_keywords(r.answer, r.keywords)
        hit = bool(keyword_hit(g, keys))
        row = {"question": r.question, "answer": r.answer, "generation": g, "keywords": list(keys),
               "keyword_hit": hit, "rouge": rouge_l_recall(g, r.answer)}
        if alternatives is not None and alternatives[i]:
            alt_hit = any(keyword_hit(g, alt) for alt in alternatives[i] if alt)
            row["keyword_hit"] = hit or alt_hit
            row["alternative_keywords"] = [list(a) for a in alternatives[i]]
        if prompts is not None:
            row["prompt"] = prompt_preview(prompts[i])
        rows.append(row)
    n = len(rows)
    return {
        "n": n,
        "leak_rate": sum(r["keyword_hit"] for r in rows) / n if n else None,
        "rouge_l_recall": sum(r["rouge"] for r in rows) / n if n else None,
        "per_example": rows,
    }


def run_attacks(model: LanguageModel, records: Sequence[QARecord], attacks: Sequence[str | Attack] | None = None,
                retain_records: Sequence[QARecord] = (), *, seed: int = 0, max_new_tokens: int = 64,
                batch_size: int = 8, translator: LanguageModel | None = None, context_limit: int | None = None,
                options: dict[str, dict[str, Any]] | None = None, work_dir: str | None = None,
                method: str | None = None, on_result: Callable[[str, dict], None] | None = None) -> dict[str, Any]:
    """Run each attack against ``model`` on the forget ``records`` and score the leak.

    ``attacks``: names (see ``ATTACKS``) or ``Attack`` instances; default: all of them.
    ``options``: per-attack constructor options, e.g. ``{"many_shot": {"max_shots": 16}}``.
    Attacks that do not apply (relearning on an endpoint, prompt injection on weights,
    languages without a translator) come back as ``{"skipped": True, "reason": ...}``.
    Returns ``{"kind": "attacks", "method", "model", "seed", "n_records", "attacks": {name: result}}``;
    each result has ``leak_rate`` (keyword accuracy, or for prompt injection the
    fraction of target names extracted), ``rouge_l_recall``, ``n``, ``seconds``, ``budget``
    (``Attack.budget()`` plus ``max_new_tokens`` and ``batch_size``) and ``per_example``.
    ``batch_size`` is the number of decoder slots a generation call uses (every attack generates all its
    questions in as few calls as it can).
    """
    records = list(records)
    if not records:
        raise ConfigError("run_attacks needs at least one forget record")
    options = {k.lower().replace("-", "_"): v for k, v in (options or {}).items()}
    unknown = set(options) - set(ATTACKS)
    if unknown:
        raise ConfigError(f"options for unknown attacks {sorted(unknown)}: choose from {', '.join(ATTACKS)}")
    ctx = AttackContext(model=model, retain_records=list(retain_records), seed=seed, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, translator=translator, context_limit=context_limit, work_dir=work_dir)
    chosen = list(attacks) if attacks is not None else list(DEFAULT_ATTACKS)
    instances: list[Attack] = []
    for a in chosen:  # resolve every name first: a typo fails before any generation
        if isinstance(a, Attack):
            instances.append(a)
        else:
            key = a.strip().lower().replace("-", "_")
            instances.append(build_attack(key, ctx, **options.get(key, {})))
    results: dict[str, dict] = {}
    for attack in instances:
        t0 = time.perf_counter()
        try:
            attack.check_applies(model)
            res = attack.run(model, records, ctx)
            res.setdefault("skipped", False)
        except AttackSkipped as exc:
            res = {"skipped": True, "reason": str(exc), "leak_rate": None, "rouge_l_recall": None}
        budget = {"max_new_tokens": ctx.max_new_tokens, "batch_size": ctx.batch_size, **attack.budget()}
        res = {**attack.describe(), **res, "budget": budget, "seconds": time.perf_counter() - t0}
        results[attack.name] = res
        if on_result is not None:
            on_result(attack.name, res)
    return {
        "kind": "attacks",
        "method": method or model.name,
        "model": model.describe(),
        "family": model_family(model),
        "seed": seed,
        "n_records": len(records),
        "max_new_tokens": max_new_tokens,
        "attacks": results,
    }


def summary_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per attack: name, leak rate, ROUGE-L recall, n, skipped reason."""
    rows = []
    for name, r in result["attacks"].items():
        rows.append({"attack": name, "leak_rate": r.get("leak_rate"), "rouge_l_recall": r.get("rouge_l_recall"),
                     "n": r.get("n"), "reason": r.get("reason") if r.get("skipped") else ""})
    return rows
