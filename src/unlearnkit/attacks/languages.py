"""Other-language attack: the forget question in Spanish, French or German.

Built-in benchmark questions are translated from the hand-written template sets
in ``translations.py`` (exact, no model needed), and an answer also counts as a
leak when it contains the answer's value in that language (``relojero`` for
"clockmaker"). Other data needs a translation
backend: any ``LanguageModel`` asked to translate (``translator=``). Records with
no built-in translation and no backend are left out; when that is every record the
attack is skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from unlearnkit.attacks.base import Attack, AttackContext, AttackSkipped, score_generations
from unlearnkit.attacks.translations import LANGUAGE_NAMES, translate_builtin, translated_keywords
from unlearnkit.options import option


@dataclass
class LanguageOptions:
    max_new_tokens: int = option(96, "length of the translator's answer", minimum=1)
    use_builtin: bool = option(True, "use the built-in translations of the built-in benchmark where they exist")

TRANSLATE_PROMPT = ("Translate the following question into {language}. Keep names, titles, numbers and dates "
                    "exactly as they are. Reply with the translated question only.\n\n{question}")


def clean_translation(text: str) -> str:
    """The first non-empty line of a backend's reply, without quotes or a "Translation:" label."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    for label in ("translation:", "traducción:", "traduction :", "traduction:", "übersetzung:"):
        if line.lower().startswith(label):
            line = line[len(label):].strip()
    return line.strip("\"'“”«» ")


class LanguageAttack(Attack):
    language: ClassVar[str] = ""
    Options = LanguageOptions

    def __init__(self, translator=None, max_new_tokens: int = 96, use_builtin: bool = True):
        self.translator = translator
        self.max_new_tokens = int(max_new_tokens)
        self.use_builtin = use_builtin
        self.sources: list[str] = []

    @classmethod
    def from_context(cls, ctx: AttackContext, **options):
        options.setdefault("translator", ctx.translator)
        return cls(**options)

    def build(self, records, seed=0):
        prompts: list[str | None] = [translate_builtin(r, self.language) if self.use_builtin else None
                                     for r in records]
        self.sources = ["builtin" if p else "" for p in prompts]
        missing = [i for i, p in enumerate(prompts) if p is None]
        if missing and self.translator is not None:
            language = LANGUAGE_NAMES[self.language]
            asks = [TRANSLATE_PROMPT.format(language=language, question=records[i].question) for i in missing]
            replies = self.translator.generate(asks, max_new_tokens=self.max_new_tokens, do_sample=False)
            for i, reply in zip(missing, replies):
                text = clean_translation(reply)
                prompts[i] = text or None
                self.sources[i] = "translator" if text else ""
        if records and all(p is None for p in prompts):
            raise AttackSkipped(f"no {LANGUAGE_NAMES[self.language]} translation: the questions are not from the "
                                "built-in benchmark and no translation backend is configured (pass translator=, "
                                "or --translator MODEL on the command line)")
        return prompts

    def run(self, model, records, ctx):
        prompts = self.build(records, ctx.seed)
        keep = [i for i, p in enumerate(prompts) if p is not None]
        used = [records[i] for i in keep]
        gens = model.generate([prompts[i] for i in keep], max_new_tokens=ctx.max_new_tokens,
                              batch_size=ctx.batch_size)
        alts = [translated_keywords(r, self.language) for r in used]
        out = score_generations(used, gens, [prompts[i] for i in keep], alternatives=alts)
        out["n_records"] = len(records)
        return out

    def describe(self):
        out = super().describe()
        out.update(language=self.language, translated_builtin=self.sources.count("builtin"),
                   translated_by_backend=self.sources.count("translator"),
                   untranslated=self.sources.count(""))
        return out


class SpanishQuestion(LanguageAttack):
    name = "lang_es"
    language = "es"
    summary = "the forget question in Spanish"


class FrenchQuestion(LanguageAttack):
    name = "lang_fr"
    language = "fr"
    summary = "the forget question in French"


class GermanQuestion(LanguageAttack):
    name = "lang_de"
    language = "de"
    summary = "the forget question in German"
