"""ALU — Agentic LLM Unlearning (Sanyal & Mandal, 2025): a retrain-free, model-agnostic guard.

Four agents, each an LLM call to any backend (the guarded model by default; any
``LanguageModel`` — a local model or an OpenAI-compatible endpoint — per role)::

    r0       = Vanilla(query)                                  # the plain answer
    relevant = retrieve(query, r0)                             # top-m of possibly 1000s of targets
    if nothing relevant: return r0                             # cheap path: ONE LLM call in all
    hit      = AuditErase.check(query, r0, relevant)           # LLM judge: direct/indirect leak?
    if not hit: return r0
    cands    = AuditErase.rewrite(query, r0, relevant) x K     # sampled, target information removed
    rates    = Critic(query, relevant, cand) per candidate     # 1 = target evident .. 5 = no trace
    top      = best J by rate;  if mean(top) < tau: return refusal
    answer   = Composer(top)                                   # merge, add nothing
    if answer names a target or a key fact term: return refusal   # deterministic final check

Differences from the reference, all on the side of safety or cost:

* **retrieval** (``alu_retrieval``): agents see only the ``top_m`` targets relevant to the
  query and draft, never the whole list, so prompt length is bounded however many targets
  there are (the reference puts every target in every prompt);
* **name shortcut** (``name_hit_is_leak``, default on): an exact target name/alias in the
  question, draft or an earlier user turn is a direct leak without asking the judge;
* **deterministic checks**: a candidate containing a relevant target's name, name part or
  key fact term gets rating 1 without a critic call (so does an empty one), identical
  candidates are rated once; the composed
  answer is refused if it contains any target's name/alias or a relevant target's key term;
* **fail closed**: an unreadable audit verdict counts as a leak (``judge_fail_closed``), an
  unreadable rating as 1; once a leak is detected the draft ``r0`` is never returned;
* the **composer** never sees the protected list (it cannot copy from it) and the
  question it sees has the targets' names masked; with a single distinct kept candidate the
  composer call is skipped.

Accounting (``alu_accounting``): every answer carries an ``ALUTrace`` (path taken, retrieved
targets, per-role LLM calls, prompt/completion tokens and seconds). ``guard.last_trace`` is the
last query's, ``guard.totals`` the cumulative figures. Within one ``generate`` call the stages
run batched over all prompts; a stage's wall time is split among the prompts in proportion to
their calls. Traces name the retrieved targets: they are for operators, never for end users.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from unlearnkit.data.targets import Target, targets_from_records
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import alu_agents as agents
from unlearnkit.methods.alu_accounting import (ALUTrace, add_to_totals, backend_token_counts, charge, new_totals,
                                               totals_json)
from unlearnkit.methods.alu_retrieval import Embedder, Hit, TargetIndex, make_embedder
from unlearnkit.methods.alu_targets_file import load_targets_file
from unlearnkit.methods.base import option
from unlearnkit.methods.guards import Guard, GuardMethod
from unlearnkit.models.base import LanguageModel, Prompt, last_user_message
from unlearnkit.options import check_options as check_declared

BACKEND_OPTIONS = {"vanilla": "vanilla_model", "audit": "audit_model", "erase": "audit_model",
                   "critic": "critic_model", "composer": "composer_model"}
INDEX_FILE = "alu_index.npz"


@dataclass
class ALUOptions:
    ADDED: ClassVar[dict] = {"neighbour_budget": None}  # added after runs were recorded (see ECOOptions.ADDED)

    k: int = option(5, "K: sanitised candidate rewrites per leaking answer", minimum=1)
    j: int = option(3, "J: best-rated candidates kept for the composer (1 <= J <= K)", minimum=1)
    tau: float = option(4.0, "tau: minimum mean critic rating (1..5) of the J kept; below it the guard refuses",
                        minimum=1, maximum=5)
    top_m: int = option(3, "relevant targets retrieved per query (the only ones the agents see)", minimum=1)
    retrieval_threshold: float = option(
        0.65, "minimum embedding cosine for a target to count as relevant (name, name-part and key-term matches "
              "always count); no relevant target means a clean query, answered with one LLM call",
        minimum=-1, maximum=1)
    embedder: str = option("minilm", "retrieval embeddings: minilm (all-MiniLM-L6-v2) or hashing (lexical, no model)",
                           choices=("minilm", "hashing"))
    references: bool = option(True, "retrieve targets a question refers to without naming them (works, roles, "
                                    "places, dates: data/reference_detection; exact facets only with embedder=hashing)")
    neighbour_budget: float | None = option(
        None, "false-refusal budget on neighbour questions (about the targets' works, places, dates; not about "
              "them; the gateway sets 0.02): key-term and embedding retrieval count only above a threshold "
              "calibrated split-conformally on the reference detector's calibration neighbours, so that "
              "retrieval as a whole (names, the detector included) sends at most this share of them to the "
              "audit; a key term the draft repeats from the question is not evidence (names always count); "
              "none = retrieval as before",
        minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True)
    name_hit_is_leak: bool = option(True, "an exact target name/alias in the question or draft is a direct leak "
                                           "without asking the audit judge")
    judge_fail_closed: bool = option(True, "an unreadable audit verdict counts as a leak")
    rewrite_temperature: float = option(0.7, "sampling temperature of the K rewrites (0 = greedy)", minimum=0)
    verdict_max_new_tokens: int = option(8, "tokens the audit judge and the critic may write", minimum=1)
    facts_per_target: int = option(3, "facts per retrieved target shown to the agents", minimum=0)
    refusal: str = option(agents.DEFAULT_REFUSAL, "the fixed refusal text")
    vanilla_model: str = option("", "backend of the vanilla agent (load_model spec or http URL; '' = guarded model)")
    audit_model: str = option("", "backend of AuditErase (check and rewrite); '' = guarded model")
    critic_model: str = option("", "backend of the critic; '' = guarded model")
    composer_model: str = option("", "backend of the composer; '' = guarded model")
    targets_file: str = option("", "JSON list of targets ({name, aliases, description, facts}) used instead of "
                                   "the forget split's subjects")
    seed: int = option(0, "seed of the sampled rewrites")


def check_options(o: ALUOptions) -> None:
    check_declared(o, "ALU")
    if o.j > o.k:
        raise ConfigError(f"ALU option j must be between 1 and k={o.k}, got {o.j}")
    if not o.refusal.strip():
        raise ConfigError("ALU option refusal must not be empty")


@dataclass
class _Job:
    prompt: Prompt
    query: str
    context: list[str]
    trace: ALUTrace
    r0: str = ""
    hits: list[Hit] = field(default_factory=list)
    answer: str | None = None

    @property
    def targets(self) -> list[Target]:
        return [h.target for h in self.hits]


class ALUGuard(Guard):
    """The ALU pipeline behind the ``LanguageModel`` interface (see the module docstring).

    ``backends`` maps a role (``vanilla``, ``audit`` — also used for ``erase`` —, ``critic``,
    ``composer``) to a ``LanguageModel``; roles not given use the option's spec, or the
    guarded model. ``embedder`` overrides the option (tests pass a cheap deterministic one).
    """

    method = "alu"
    streams = False  # the audit, the critic and the composer read the whole draft: answers stream once decided

    def __init__(self, base: LanguageModel, targets: list, options: ALUOptions | None = None, *,
                 backends: dict[str, LanguageModel] | None = None, embedder: Embedder | None = None,
                 index_cache: str | Path | None = None):
        options = options or ALUOptions()
        check_options(options)
        self._lock = threading.RLock()
        self._backends: dict[str, LanguageModel] = dict(backends or {})
        if "audit" in self._backends and "erase" not in self._backends:
            self._backends["erase"] = self._backends["audit"]
        self._loaded: dict[str, LanguageModel] = {}
        embedder = embedder or make_embedder(options.embedder)
        self.index = TargetIndex(embedder, threshold=options.retrieval_threshold, top_m=options.top_m,
                                 references=self._new_references(options, embedder),
                                 neighbour_budget=options.neighbour_budget)
        if index_cache is not None:
            self.index.load_cache(index_cache)
        self.last_trace: ALUTrace | None = None
        self.totals = new_totals()
        super().__init__(base, targets, options)

    # -- targets ---------------------------------------------------------------------
    @staticmethod
    def _new_references(options: ALUOptions, embedder):
        """The reference detector behind retrieval: MiniLM when retrieval embeds with it, exact facets only
        with a lexical embedder; None when the option is off."""
        if not options.references:
            return None
        from unlearnkit.data.reference_detection import ReferenceDetector, NoEncoder
        from unlearnkit.methods.alu_retrieval import MiniLMEmbedder

        budget = {} if options.neighbour_budget is None else {"budget": options.neighbour_budget}
        return ReferenceDetector(embedder if isinstance(embedder, MiniLMEmbedder) else NoEncoder(), **budget)

    def _ensure_index(self) -> TargetIndex:
        signature = tuple((t.name, t.aliases, t.description, t.facts) for t in self.targets)
        with self._lock:
            if signature != self.index.signature:
                # build a fresh index (sharing the embedding cache) and swap it in: a query running
                # concurrently keeps the consistent snapshot it started with
                old = self.index
                self.index = TargetIndex(old.embedder, threshold=old.threshold, top_m=old.top_m,
                                         max_term_targets=old.max_term_targets, cache=old.cache,
                                         references=old.references and old.references.fresh(),
                                         neighbour_budget=old.neighbour_budget).build(self.targets)
            return self.index

    # -- backends --------------------------------------------------------------------
    def backend(self, role: str) -> LanguageModel:
        if role in self._backends:
            return self._backends[role]
        spec = getattr(self.options, BACKEND_OPTIONS[role])
        if not spec:
            return self.base
        with self._lock:
            if spec not in self._loaded:
                from unlearnkit.models.loading import load_model

                self._loaded[spec] = load_model(spec)
            return self._loaded[spec]

    def _call(self, role: str, prompts: list, owners: list[_Job], *, chat: bool = True, **gen) -> list[str]:
        if not prompts:
            return []
        backend = self.backend(role)
        t0 = time.perf_counter()
        if hasattr(backend, "generate_with_usage"):
            pairs = backend.generate_with_usage(prompts, chat=chat, **gen)
            outs = [t for t, _ in pairs]
            p_tok = [u.prompt_tokens for _, u in pairs]
            c_tok = [u.completion_tokens for _, u in pairs]
            estimated = False
        else:
            outs = list(backend.generate(prompts, chat=chat, **gen))
            p_tok, c_tok, estimated = backend_token_counts(backend, prompts, outs, chat)
        if len(outs) != len(prompts):
            raise RuntimeError(f"the {role} backend returned {len(outs)} completions for {len(prompts)} prompts")
        charge([job.trace for job in owners], role, p_tok, c_tok, (time.perf_counter() - t0) / len(prompts), estimated)
        return [o if isinstance(o, str) else "" for o in outs]

    # -- the pipeline ----------------------------------------------------------------
    def answer_with_traces(self, prompts: Sequence[Prompt], *, chat: bool = True, max_new_tokens: int = 200,
                           do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                           batch_size: int = 8, seed: int | None = None,
                           progress: str | None = None) -> list[tuple[str, ALUTrace]]:
        """Answer every prompt through the pipeline; each answer comes with its ``ALUTrace``."""
        o = self.options
        t_start = time.perf_counter()
        index = self._ensure_index()
        jobs = []
        for p in prompts:
            if isinstance(p, str):
                query, context = p, []
            else:
                query = last_user_message(p)
                users = [m.get("content", "") for m in p if m.get("role") == "user"]
                context = users[:-1]
            jobs.append(_Job(p, query, context, ALUTrace(query=query)))

        # 1. vanilla answer, then retrieval (cheap path: nothing relevant -> r0, no other call)
        r0s = self._call("vanilla", [j.prompt for j in jobs], jobs, chat=chat, max_new_tokens=max_new_tokens,
                         do_sample=do_sample, temperature=temperature, top_p=top_p, batch_size=batch_size,
                         seed=seed, progress=progress)
        for j, r0 in zip(jobs, r0s):
            j.r0 = r0
            t0 = time.perf_counter()
            j.hits = index.retrieve(j.query, r0, j.context)
            j.trace.retrieval_seconds = time.perf_counter() - t0
            j.trace.retrieved = [{"name": h.target.name, "score": round(h.score, 4), "reason": h.reason}
                                 for h in j.hits]
            if not j.hits:
                self._finish(j, r0, "clean:retrieval")

        # 2. audit: name shortcut, else the LLM judge
        judge = []
        for j in (j for j in jobs if j.answer is None):
            if o.name_hit_is_leak and any(h.reason == "name" for h in j.hits):
                j.trace.verdict = "LEAK (name match)"
            else:
                judge.append(j)
        verdicts = self._call("audit", [agents.audit_prompt(j.query, j.r0, j.targets, o.facts_per_target)
                                        for j in judge], judge, max_new_tokens=o.verdict_max_new_tokens,
                              do_sample=False, batch_size=batch_size)
        for j, v in zip(judge, verdicts):
            j.trace.verdict = v
            leak = agents.parse_verdict(v)
            if leak is None:
                leak = o.judge_fail_closed
            if not leak:
                self._finish(j, j.r0, "clean:judge")

        # 3. erase: K sampled rewrites per leaking answer
        leaking = [j for j in jobs if j.answer is None]
        erase_prompts, erase_owners = [], []
        for j in leaking:
            p = agents.erase_prompt(j.query, j.r0, j.targets, o.facts_per_target)
            erase_prompts += [p] * o.k
            erase_owners += [j] * o.k
        rewrites = self._call("erase", erase_prompts, erase_owners, max_new_tokens=max_new_tokens,
                              do_sample=o.rewrite_temperature > 0, temperature=max(o.rewrite_temperature, 1e-5),
                              top_p=1.0, batch_size=batch_size, seed=o.seed)
        for n, j in enumerate(leaking):
            j.trace.candidates = [agents.clean_candidate(c) for c in rewrites[n * o.k:(n + 1) * o.k]]

        # 4. critic: deterministic 1 for empty or term-bearing candidates, else one LLM rating per distinct text
        critic_prompts, critic_owners, slots = [], [], []
        for j in leaking:
            j.trace.ratings = [1.0] * o.k
            seen: dict[str, int] = {}
            for c_i, cand in enumerate(j.trace.candidates):
                if not cand.strip() or index.leaked_terms(cand, j.targets):
                    continue
                if cand not in seen:
                    seen[cand] = len(critic_prompts)
                    critic_prompts.append(agents.critic_prompt(j.query, cand, j.targets, o.facts_per_target))
                    critic_owners.append(j)
                slots.append((j, c_i, seen[cand]))
        ratings = self._call("critic", critic_prompts, critic_owners, max_new_tokens=o.verdict_max_new_tokens,
                             do_sample=False, batch_size=batch_size)
        for j, c_i, r_i in slots:
            j.trace.ratings[c_i] = agents.parse_rating(ratings[r_i])

        # 5. keep the J best; refuse when their mean rating is below tau
        compose, compose_owners = [], []
        for j in leaking:
            order = sorted(range(o.k), key=lambda i: -j.trace.ratings[i])[: o.j]
            j.trace.kept = order
            if sum(j.trace.ratings[i] for i in order) / len(order) < o.tau:
                self._finish(j, o.refusal, "refused:ratings")
                continue
            kept = list(dict.fromkeys(j.trace.candidates[i] for i in order))
            if len(kept) == 1:
                j.answer = kept[0]  # nothing to merge: skip the composer
            else:
                compose.append(agents.composer_prompt(agents.mask_names(j.query, j.targets), kept))
                compose_owners.append(j)
        merged = self._call("composer", compose, compose_owners, max_new_tokens=max_new_tokens, do_sample=False,
                            batch_size=batch_size)
        for j, m in zip(compose_owners, merged):
            j.answer = agents.clean_candidate(m)

        # 6. deterministic final check on every sanitised answer
        for j in leaking:
            if j.trace.path:
                continue
            answer = j.answer or ""
            leaked = self.final_check(answer, j.targets, index)
            if leaked or not answer.strip():
                j.trace.leaked_terms = leaked
                j.answer = None
                self._finish(j, o.refusal, "refused:final-check")
            else:
                j.answer = None
                self._finish(j, answer, "sanitised")

        elapsed = time.perf_counter() - t_start
        results = []
        with self._lock:
            for j in jobs:
                j.trace.seconds = elapsed / len(jobs)
                add_to_totals(self.totals, j.trace)
                results.append((j.trace.answer, j.trace))
            if jobs:
                self.last_trace = jobs[-1].trace
        return results

    @staticmethod
    def _finish(job: _Job, answer: str, path: str) -> None:
        job.answer = answer
        job.trace.answer = answer
        job.trace.path = path

    def final_check(self, text: str, relevant: Sequence[Target], index: TargetIndex | None = None) -> list[str]:
        """Terms that make ``text`` unsafe: any target's name/alias, or a relevant target's name part or key term."""
        index = index or self._ensure_index()
        hits = [index.targets[i].name for i in index._names.find(text)]
        return list(dict.fromkeys(hits + index.leaked_terms(text, relevant)))

    # -- LanguageModel -----------------------------------------------------------------
    def generate(self, prompts, *, chat=True, max_new_tokens=200, do_sample=False, temperature=1.0, top_p=1.0,
                 batch_size=8, seed=None, progress=None) -> list[str]:
        """Run the ALU pipeline on each prompt (stages batched across prompts)."""
        return [a for a, _ in self.answer_with_traces(
            prompts, chat=chat, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
            top_p=top_p, batch_size=batch_size, seed=seed, progress=progress)]

    def score(self, prompts, answers, *, chat=True, batch_size=16, progress=None):
        """The base model's teacher-forced scores, unchanged.

        ALU changes no weight and no prompt of the answering model: it intervenes only on
        *generated* text (audit, rewrite, critic, composer). Teacher forcing scores a given
        answer token by token and so cannot see a retrain-free pipeline. These scores are the
        base model's, as-is: probability-based metrics (truth ratio, keyword confidence,
        MIA) of an ALU guard equal those of the unguarded model and say nothing about the
        guard. Evaluate ALU by generation — ROUGE and the keyword leak rate.
        """
        return self.base.score(prompts, answers, chat=chat, batch_size=batch_size, progress=progress)

    def describe(self) -> dict:
        out = super().describe()
        out.update(options={k: v for k, v in dataclasses.asdict(self.options).items()},
                   embedder=self.index.embedder.name)
        if self.index.neighbour_calibration:
            out["neighbour_calibration"] = dict(self.index.neighbour_calibration)
        return out

    def totals_json(self) -> dict:
        with self._lock:
            return totals_json(self.totals)

    def save(self, path: str | Path, base_spec: str) -> Path:
        path = super().save(path, base_spec)
        self._ensure_index().save_cache(Path(path) / INDEX_FILE)
        return path


def ask(guard: LanguageModel, query: Prompt, *, max_new_tokens: int = 200) -> tuple[str, ALUTrace | None]:
    """Answer one query (a user message or a chat message list) through ``guard``.

    Returns ``(answer, trace)``; the trace is the ALU trace (None for a model that is not an
    ALU guard). The trace names retrieved targets: show it to operators only.
    """
    if isinstance(guard, ALUGuard):
        [(answer, trace)] = guard.answer_with_traces([query], max_new_tokens=max_new_tokens)
        return answer, trace
    return guard.generate([query], max_new_tokens=max_new_tokens)[0], None


class ALU(GuardMethod):
    name = "alu"
    summary = ("Agentic unlearning: vanilla answer, audit, K rewrites, critic, composer; retrieves only the "
               "relevant targets (no weight change).")
    Options = ALUOptions
    guard_class = ALUGuard

    def validate(self) -> None:
        check_options(self.options)

    def apply(self, model, task, out_dir, train):
        if self.options.targets_file:
            targets = load_targets_file(self.options.targets_file)
        else:
            targets = targets_from_records(task.forget)
        if not targets:
            raise DataError("ALU needs at least one target: the forget split is empty and no targets_file was given")
        return ALUGuard(model, targets, self.options)

    @classmethod
    def rebuild(cls, base: LanguageModel, payload: dict, path: Path) -> ALUGuard:
        known = {f.name for f in dataclasses.fields(ALUOptions)}
        options = ALUOptions(**{k: v for k, v in payload.get("options", {}).items() if k in known})
        return ALUGuard(base, payload.get("targets", []), options, index_cache=Path(path) / INDEX_FILE)
