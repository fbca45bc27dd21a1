"""ECO — Embedding-COrrupted prompts (Liu et al., 2024): an inference-time unlearning guard.

The model's weights never change. For every prompt:

1. a **prompt classifier** (``eco_classifier``) decides from the last user message whether
   it touches a forget target: ``p(forget|x) > τ`` (τ fixed or split-conformal
   calibrated), or (option ``name_match``, on by default; not in the paper) the message
   names a target; with ``neighbour_budget`` (off by default, 0.02 behind the gateway; not in the paper) τ is raised,
   split-conformally on the reference detector's calibration neighbour questions (about the
   targets' works, places and dates, not about the targets), so that the whole decision flags at
   most that share of them; and (option ``other_names``, off by default, on behind the gateway; not in
   the paper) the classifier alone does not flag a message that names someone who is not a target;
2. unflagged prompts go to the bare model untouched (bit-for-bit its own scores and
   generations);
3. flagged prompts run with a forward hook on the input embedding layer that corrupts
   the embeddings of the selected prompt tokens (``eco_corruption``: the targets' entity
   tokens, or every prompt token but the last), on prefill only, never the answer of a
   scored pair;
4. the corruption strength σ is found offline by zeroth-order search (``eco_sigma``)
   toward what a model that never saw the data scores.

Targets change at run time: ``add_targets``/``remove_targets`` retrain only the
classifier (seconds), on the training prompts of ``eco_prompts``. A guard directory holds
``guard.json``, ``eco_classifier.npz`` (numpy arrays only), ``eco_state.json`` (σ, training
prompts) and ``eco_sigma.json`` (the σ search log).

Where this departs from the paper (all exposed as options): the classifier is a small
head on sentence or LLM embeddings instead of a fine-tuned roberta; the entity tokens
are the targets' names/aliases/name parts/key fact terms found in the prompt (the
reference runs a NER tagger over the prompt), falling back to all tokens when none is
found; the default σ target is the bare model's score on the holdout split (the paper
uses the retain model's score, which ``sigma_target`` accepts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from unlearnkit.data.targets import as_target, targets_from_records
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.io import read_json, write_json_atomic
from unlearnkit.data.target_matching import TermFinder
from unlearnkit.methods.base import option
from unlearnkit.methods.eco_classifier import (CLASSIFIER_FILE, ENCODERS, HEADS, PromptClassifier, make_encoder)
from unlearnkit.methods.eco_corruption import (CORRUPTIONS, SELECTIONS, USES_SIGMA, EmbeddingCorruptor, PromptPlan,
                                               select_positions, target_terms)
from unlearnkit.methods.eco_prompts import (GENERIC_QUESTIONS, examples_from_records, negatives_from_records,
                                            positive_groups, swapped_negatives)
from unlearnkit.methods.eco_sigma import SIGMA_FILE, SIGMA_METRICS, search_sigma
from unlearnkit.methods.guards import Guard, GuardMethod
from unlearnkit.models.base import LanguageModel, last_user_message
from unlearnkit.options import check_options

STATE_FILE = "eco_state.json"

@dataclass
class ECOOptions:
    # Options added after runs were recorded, with the value that reproduces those runs (workflows/tofu.py
    # reuses a recorded run only when its options match; a missing option matches this value).
    ADDED: ClassVar[dict] = {"neighbour_budget": None, "other_names": False}

    encoder: str = option("minilm", "prompt-classifier encoder: minilm (all-MiniLM-L6-v2), llm (the target model's "
                                    "mean-pooled hidden states) or hashing (lexical, no model)", choices=ENCODERS)
    head: str = option("logistic", "classifier head: logistic (class-balanced logistic regression) or mlp",
                       choices=HEADS)
    c: float = option(1.0, "inverse regularisation strength of the head", minimum=0, exclusive_minimum=True)
    threshold: float = option(0.5, "flag a prompt when p(forget|prompt) > threshold (unless conformal_fnr > 0)",
                              minimum=0, maximum=1, exclusive_maximum=True)
    conformal_fnr: float = option(0.0, "if > 0: calibrate the threshold by split conformal prediction to this "
                                        "false-negative rate on held-out forget prompts (0 = off)",
                                  minimum=0, maximum=1, exclusive_maximum=True)
    calibration_fraction: float = option(0.3, "share of forget prompt groups held out for conformal calibration",
                                         minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    name_match: bool = option(True, "also flag any prompt naming a target or alias (case- and spacing-insensitive; "
                                    "not in the paper)")
    references: bool = option(True, "also flag any prompt that refers to a target without its name (its works, "
                                    "roles, places, dates: data/reference_detection; MiniLM with encoder=minilm or "
                                    "llm, exact facets only with encoder=hashing; not in the paper)")
    neighbour_budget: float | None = option(
        None, "false-refusal budget on neighbour questions (about the targets' works, places, dates; not about "
              "them; the gateway sets 0.02): the classifier's threshold is raised, split-conformally on the "
              "reference detector's calibration neighbours, so that the classifier, the name match and the "
              "detector together flag at most this share of them (name mentions always flag); none = the "
              "threshold alone, as before",
        minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    other_names: bool = option(False, "the classifier alone does not flag a prompt that names someone who is not a "
                                      "target (a run of 2+ capitalised words with no target name in it); names and "
                                      "references still flag (not in the paper; the gateway turns it on)")
    llm_layer: float = option(0.5, "encoder=llm: relative depth of the pooled hidden states", minimum=0, maximum=1,
                              exclusive_minimum=True)
    max_negatives: int = option(2000, "retain prompts used as classifier negatives at most (seeded sample)",
                                minimum=1)
    swap_negatives: int = option(2, "hard negatives per forget prompt naming a target: the same prompt with the "
                                     "name replaced by another person's (0 = off; not in the paper)", minimum=0)
    token_selection: str = option("entity", "tokens to corrupt: entity (the targets' names/aliases/key terms in "
                                            "the prompt) or all (every prompt token but the last)",
                                  choices=SELECTIONS)
    entity_fallback: bool = option(True, "entity mode: corrupt all prompt tokens but the last when a flagged prompt "
                                         "contains no target term")
    corruption: str = option("rand_noise_first_n", "how flagged prompts' embeddings change", choices=CORRUPTIONS)
    n: int = option(1, "rand_noise_first_n: number of leading embedding dims that get noise", minimum=1)
    k: int = option(8, "*_top_k: number of largest-magnitude embedding dims changed", minimum=1)
    sigma: float = option(1.0, "noise standard deviation σ (the initial value when sigma_search is on)", minimum=0)
    sigma_search: bool = option(True, "tune σ by zeroth-order search on the forget set when unlearning")
    sigma_metric: str = option("prob", "σ search metric: prob (mean normalised answer probability on the forget "
                                       "set: monotone in σ) or truth_ratio (forget truth-ratio score; falls back "
                                       "to prob when the records lack perturbed answers)", choices=SIGMA_METRICS)
    sigma_target: float | None = option(None, "value of the metric to reach; none = the bare model's value on the "
                                              "holdout split (questions it never saw)", minimum=0)
    sigma_steps: int = option(10, "σ search steps", minimum=0)
    sigma_lr: float = option(10.0, "σ search learning rate", minimum=0, exclusive_minimum=True)
    sigma_eps: float = option(0.5, "σ search central-difference half-width ε", minimum=0, exclusive_minimum=True)
    sigma_min: float = option(0.1, "lower bound of σ during the search", minimum=0)
    sigma_tol: float = option(0.02, "stop the σ search once |metric − target| <= tol", minimum=0)
    sigma_records: int = option(64, "forget and holdout records the σ search scores, at most (a seeded sample: the "
                                    "search costs the same for 1 or 1000 targets; 0 = all)", minimum=0)
    seed: int = option(0, "seed of the noise, the classifier and the negative sample")

    def __post_init__(self):
        if self.sigma_target is not None and self.sigma_target < 0:  # how "unset" was written before none
            self.sigma_target = None


def _is_hf(model) -> bool:
    return all(hasattr(model, a) for a in ("model", "tokenizer", "prompt_ids", "prompt_text", "observe_batches"))


class ECOGuard(Guard):
    """Classify, then answer unflagged prompts with the bare model and flagged ones with corrupted embeddings."""

    method = "eco"

    def __init__(self, base: LanguageModel, targets: list, options: ECOOptions, *,
                 examples: dict[str, list[list[str]]] | None = None, negatives: Sequence[str] = (),
                 classifier_file: Path | None = None, sigma: float | None = None, sigma_log: dict | None = None,
                 embedding_cache: dict | None = None, references=None):
        if not _is_hf(base):
            raise ConfigError(f"ECO corrupts input embeddings, so it needs a local transformers model; "
                              f"'{getattr(base, 'name', base)}' is a {type(base).__name__}")
        check_options(options)
        self.options = options
        self._ready = False
        self.examples: dict[str, list[list[str]]] = {k: [list(g) for g in v] for k, v in (examples or {}).items()}
        self.negatives = list(dict.fromkeys(negatives))
        self.sigma = float(options.sigma if sigma is None else sigma)
        self.sigma_log = sigma_log
        self.last_flags: list[bool] = []
        self.last_probs: list[float] = []
        self._lock = threading.RLock()
        self._encoder = make_encoder(options.encoder, base, options.llm_layer)
        self.references = self._new_references(references)
        self.classifier = self._new_classifier()
        if embedding_cache is not None:  # share encoded training prompts between guards (benchmarks)
            self.classifier._cache = embedding_cache
        super().__init__(base, targets, options)
        self._ready = True
        self._refresh_terms()
        if classifier_file is not None and Path(classifier_file).is_file():
            self.classifier.load(classifier_file)
        else:
            self.retrain()

    # -- targets -------------------------------------------------------------------------
    def _new_classifier(self) -> PromptClassifier:
        o = self.options
        return PromptClassifier(self._encoder, o.head.lower(), o.c, 64, o.threshold, o.conformal_fnr,
                                o.calibration_fraction, o.seed)

    def add_targets(self, targets: list, examples: dict[str, list[list[str]]] | None = None) -> None:
        """Add targets (and, optionally, forget prompts per target name); retrains the classifier only."""
        with self._lock:
            targets = [as_target(t) for t in targets]
            super().add_targets(targets)
            for name, groups in (examples or {}).items():
                self.examples.setdefault(name, []).extend([list(g) for g in groups])
            if self._ready:
                self._refresh_terms()
                self.retrain()

    def remove_targets(self, names: list) -> None:
        with self._lock:
            super().remove_targets(names)
            keep = set(self.target_names)
            self.examples = {k: v for k, v in self.examples.items() if k in keep}
            self._refresh_terms()
            self.retrain()

    def _new_references(self, given=None):
        """The reference detector (``references`` option): the one given (shared), or a new one."""
        if not self.options.references:
            return None
        if given is not None:
            return given
        from unlearnkit.data.reference_detection import ReferenceDetector, NoEncoder

        budget = {} if self.options.neighbour_budget is None else {"budget": self.options.neighbour_budget}
        return ReferenceDetector(NoEncoder() if self.options.encoder.lower() == "hashing" else None, **budget)

    def _refresh_terms(self) -> None:
        self._entity_terms = TermFinder(target_terms(self.targets))
        self._name_terms = TermFinder(n for t in self.targets for n in t.names)
        if self.references is not None:  # built aside and swapped in: a concurrent classify sees one whole index
            refs = self.references.fresh() if self.references.profiles else self.references
            refs.build(self.targets)
            refs.calibrate()
            self.references = refs

    def positive_groups(self) -> list[list[str]]:
        return positive_groups(self.targets, self.examples)

    def swapped_negatives(self, groups: list[list[str]]) -> list[str]:
        return swapped_negatives(groups, self.targets, self._name_terms, self.options.swap_negatives,
                                 self.options.seed)

    def retrain(self) -> dict:
        """Re-fit the classifier on the current targets (no model weights are touched)."""
        with self._lock:
            clf = self._new_classifier()
            clf._cache = self.classifier._cache  # keep embeddings of unchanged training prompts
            if self.targets:
                groups = self.positive_groups()
                negatives = list(self.negatives) + list(GENERIC_QUESTIONS) + self.swapped_negatives(groups)
                stats = clf.fit(groups, negatives)
                if self.options.neighbour_budget is not None:
                    stats.update(self._calibrate_on_neighbours(clf))
                    clf.stats = stats
            else:
                stats = {"positives": 0, "note": "no targets: nothing is flagged"}
            self.classifier = clf
            return stats

    def _calibrate_on_neighbours(self, clf: PromptClassifier) -> dict:
        """Raise ``clf``'s threshold so that the whole decision (classifier, name match, detector) flags at
        most ``neighbour_budget`` of the calibration neighbour questions (the detector's own, when it has
        them; else built the same way from the targets' local profiles)."""
        from unlearnkit.data.reference_detection import calibration_questions, joint_threshold
        from unlearnkit.data.target_profile import build_profile

        budget = self.options.neighbour_budget
        caught_by = self.references.caught_neighbours() if self.references is not None else {}
        questions = list(caught_by) or calibration_questions([build_profile(t) for t in self.targets])
        caught = [caught_by.get(q, False) or (self.options.name_match and self._name_terms.found(q))
                  for q in questions]
        probs = clf.head.predict_proba(clf.embed(questions, cache=True))
        if self.options.other_names:  # what classify() lets the classifier flag
            probs = np.where([bool(self._names_someone_else(q)) for q in questions], -np.inf, probs)
        tau = joint_threshold(probs, caught, budget)
        before = float(clf.threshold)
        clf.threshold = max(before, tau)
        flagged = sum(bool(c) or p > clf.threshold for c, p in zip(caught, probs))
        return {"neighbour_budget": budget, "neighbours": len(questions), "neighbour_threshold": tau,
                "threshold_before_neighbours": before, "threshold": float(clf.threshold),
                "neighbours_flagged": round(flagged / len(questions), 4) if questions else None}

    # -- classification ------------------------------------------------------------------
    def classify(self, prompts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flags, p(forget), name or reference hits) of each prompt's last user message."""
        texts = [last_user_message(p) for p in prompts]
        clf = self.classifier
        names = np.zeros(len(texts), dtype=bool)
        if not self.targets:
            return names, np.zeros(len(texts)), names
        probs = clf.scores(texts)  # zeros while untrained
        if self.options.name_match:
            names = np.array([self._name_terms.found(t) for t in texts], dtype=bool)
        if self.references is not None:
            names |= np.array([bool(self.references.detect(t)) for t in texts], dtype=bool)
        by_classifier = probs > clf.threshold
        if self.options.other_names:
            by_classifier &= ~np.array([bool(self._names_someone_else(t)) for t in texts], dtype=bool)
        return by_classifier | names, probs, names

    def _names_someone_else(self, text: str) -> list[str]:
        from unlearnkit.methods.alu_retrieval import other_names

        return other_names(text, self._name_terms.found)

    def flag(self, prompts) -> list[bool]:
        return [bool(f) for f in self.classify(prompts)[0]]

    # -- corrupted calls -----------------------------------------------------------------
    def plans(self, prompts, chat: bool = True) -> list[PromptPlan]:
        o = self.options
        width = o.n if o.corruption == "rand_noise_first_n" else o.k
        out = []
        for p in prompts:
            ids, pos, how = select_positions(self.base, p, chat, self._entity_terms, o.token_selection,
                                             o.entity_fallback)
            out.append(PromptPlan.make(ids, pos, how, width, o.seed))
        return out

    def corruptor(self, prompts, chat: bool = True, sigma: float | None = None) -> EmbeddingCorruptor:
        o = self.options
        return EmbeddingCorruptor(self.base, self.plans(prompts, chat), o.corruption,
                                  self.sigma if sigma is None else sigma, o.n, o.k)

    def score_corrupted(self, prompts, answers, *, chat=True, batch_size=16, sigma: float | None = None,
                        progress=None):
        """Score as if every prompt were flagged (the σ search uses it)."""
        with self.corruptor(prompts, chat, sigma):
            return self.base.score(list(prompts), list(answers), chat=chat, batch_size=batch_size, progress=progress)

    def generate_corrupted(self, prompts, *, chat=True, sigma: float | None = None, **kwargs):
        with self.corruptor(prompts, chat, sigma):
            return self.base.generate(list(prompts), chat=chat, **kwargs)

    def prompt_embeddings(self, prompts, chat: bool = True):
        """Each prompt's input embeddings as this guard feeds its base: flagged prompts corrupted exactly as the
        hook corrupts them, the rest as they are (None over an endpoint, which has no embeddings)."""
        if not _is_hf(self.base):
            return None
        prompts = list(prompts)
        flags = self.classify(prompts)[0]
        corruptor = self.corruptor(prompts, chat)
        return [corruptor.embedded(i, corrupt=bool(flagged)) for i, flagged in enumerate(flags)]

    # -- interface -----------------------------------------------------------------------
    def _split(self, prompts):
        flags, probs, _ = self.classify(prompts)
        self.last_flags, self.last_probs = [bool(f) for f in flags], [float(p) for p in probs]
        return [i for i, f in enumerate(flags) if not f], [i for i, f in enumerate(flags) if f]

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        if len(prompts) != len(answers):
            raise ValueError(f"score() got {len(prompts)} prompts but {len(answers)} answers")
        clean, flagged = self._split(prompts)
        out = [None] * len(prompts)
        if clean:
            res = self.base.score([prompts[i] for i in clean], [answers[i] for i in clean], chat=chat,
                                  batch_size=batch_size, progress=progress)
            for i, r in zip(clean, res):
                out[i] = r
        if flagged:
            res = self.score_corrupted([prompts[i] for i in flagged], [answers[i] for i in flagged], chat=chat,
                                       batch_size=batch_size, progress=progress)
            for i, r in zip(flagged, res):
                out[i] = r
        return out

    def generate(self, prompts, *, chat=True, **kwargs):
        clean, flagged = self._split(prompts)
        out = [""] * len(prompts)
        if clean:
            for i, r in zip(clean, self.base.generate([prompts[i] for i in clean], chat=chat, **kwargs)):
                out[i] = r
        if flagged:
            for i, r in zip(flagged, self.generate_corrupted([prompts[i] for i in flagged], chat=chat, **kwargs)):
                out[i] = r
        return out

    @property
    def streams(self) -> bool:  # the prompt is classified before generation: answers stream as the base's
        return self.base.streams

    def stream_generate(self, prompts, *, on_text, chat=True, **kwargs):
        clean, flagged = self._split(prompts)
        out = [""] * len(prompts)
        for group, corrupt in ((clean, False), (flagged, True)):
            if not group:
                continue
            with self.corruptor([prompts[i] for i in group], chat) if corrupt else contextlib.nullcontext():
                answers = self.base.stream_generate([prompts[i] for i in group], chat=chat,
                                                    on_text=lambda k, text, group=group: on_text(group[k], text),
                                                    **kwargs)
            for i, r in zip(group, answers):
                out[i] = r
        return out

    def describe(self) -> dict:
        o = self.options
        stats = self.classifier.stats
        neighbours = {k: stats[k] for k in ("neighbours", "neighbour_threshold", "threshold_before_neighbours",
                                            "neighbours_flagged") if k in stats}
        calibrated = {"neighbour_budget": o.neighbour_budget, "neighbour_calibration": neighbours} \
            if o.neighbour_budget is not None else {}
        return {**super().describe(), "encoder": o.encoder, "head": o.head, "threshold": self.classifier.threshold,
                **calibrated, "token_selection": o.token_selection, "corruption": o.corruption, "sigma": self.sigma}

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path, base_spec: str) -> Path:
        path = super().save(path, base_spec)
        self.classifier.save(path / CLASSIFIER_FILE)
        write_json_atomic(path / STATE_FILE, {"sigma": self.sigma, "examples": self.examples,
                                              "negatives": self.negatives})
        if self.sigma_log is not None:
            write_json_atomic(path / SIGMA_FILE, self.sigma_log)
        return path


class ECO(GuardMethod):
    name = "eco"
    summary = "Embedding-corrupted prompts: a prompt classifier + noise on flagged prompts' embeddings (no weight change)."
    Options = ECOOptions
    guard_class = ECOGuard

    def apply(self, model, task, out_dir, train):
        targets = targets_from_records(task.forget)
        if not targets:
            raise DataError("ECO needs at least one target: the forget split is empty")
        o = self.options
        guard = ECOGuard(model, targets, o, examples=examples_from_records(task.forget),
                         negatives=negatives_from_records(task.retain, o.max_negatives, o.seed))
        if o.sigma_search and o.corruption in USES_SIGMA:
            guard.sigma_log = search_sigma(guard, task)
            guard.sigma = float(guard.sigma_log["sigma"])
            if out_dir is not None:
                write_json_atomic(Path(out_dir) / SIGMA_FILE, guard.sigma_log)
        return guard

    @classmethod
    def rebuild(cls, base: LanguageModel, payload: dict, path: Path) -> ECOGuard:
        path = Path(path)
        known = {f.name for f in dataclasses.fields(ECOOptions)}
        options = ECOOptions(**{k: v for k, v in payload.get("options", {}).items() if k in known})
        state = read_json(path / STATE_FILE) if (path / STATE_FILE).is_file() else {}
        log = read_json(path / SIGMA_FILE) if (path / SIGMA_FILE).is_file() else None
        return ECOGuard(base, payload.get("targets", []), options, examples=state.get("examples"),
                        negatives=state.get("negatives", ()), classifier_file=path / CLASSIFIER_FILE,
                        sigma=state.get("sigma"), sigma_log=log)


__all__ = ["ECO", "ECOGuard", "ECOOptions"]
