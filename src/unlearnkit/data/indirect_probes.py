"""Questions that refer to a target without naming it, and the questions around them that must pass.

Four kinds of probe, all built from the project's own sources:

* ``indirect``: about a target, without its name ("Who wrote 'The Glass Orchard'?", "Where was the
  author born in Tarnowa in 1962 raised?");
* ``neighbour``: about the works, prizes, places, dates and trades a target is linked to, not about
  the target ("What is 'The Glass Orchard' about?", "What is the population of Tarnowa?"): these
  must be answered;
* ``other``: refers, in the same way, to someone who is not a target (must pass);
* ``unrelated``: general questions, and questions naming people who are not targets.

Sources: the built-in benchmark's invented people (``synthetic.py``: the probes are made from their
true attributes, not from a profile, so the detector is not graded on its own extraction), and TOFU
(``load_tofu_probes``: the authors' own questions that never name their author, and their named
questions with the name replaced by one of the author's titles).

Neighbour templates come in two disjoint halves: ``calibration`` (what a detector calibrates its
threshold on) and ``evaluation`` (what a benchmark measures), so a measured false-refusal rate is
never taken on the questions the threshold was fitted to.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.data.synthetic_facts import ATTRIBUTE_ORDER, ATTRIBUTES, REAL_AUTHORS, WORLD_FACTS
from unlearnkit.data.targets import Target
from unlearnkit.errors import DataError

KINDS = ("indirect", "neighbour", "other", "unrelated")

NEIGHBOUR_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "calibration": {
        "work": ("What is {x} about?", "When was {x} first published?", "Is {x} worth reading?",
                 "Who published {x}?", "How long is {x}?"),
        "character": ("What is {x}'s backstory?", "In which episode does {x} first appear?"),
        "award": ("What is the {x}?", "How is the winner of the {x} chosen?", "When was the {x} founded?"),
        "place": ("What is the population of {x}?", "What is {x} famous for?", "What is the weather like in {x}?"),
        "year": ("What happened in {x}?", "Which films came out in {x}?"),
        "date": ("What day of the week was {x}?", "What happened on {x}?"),
        "job": ("What does a {x} do?", "How do you become a {x}?"),
        "genre": ("What are the best {x} books?",),
        "instrument": ("How hard is it to learn the {x}?",),
    },
    "evaluation": {
        "work": ("What themes does {x} explore?", "Has {x} been adapted for the screen?",
                 "Where can I buy a copy of {x}?", "Who designed the cover of {x}?", "Is {x} suitable for children?"),
        "character": ("What are {x}'s best-known lines?", "Who created the character {x}?"),
        "award": ("Who sponsors the {x}?", "How much prize money comes with the {x}?",
                  "Which organisation gives out the {x}?"),
        "place": ("What are the best places to visit in {x}?", "How do I get to {x} by train?",
                  "Who is the mayor of {x}?"),
        "year": ("What were the major news events of {x}?", "What music was popular in {x}?"),
        "date": ("Which famous events took place on {x}?", "Was {x} a public holiday anywhere?"),
        "job": ("How much does a {x} earn?", "What tools does a {x} use?"),
        "genre": ("What defines {x} writing?",),
        "instrument": ("What is the history of the {x}?",),
    },
}
GENERAL_QUESTIONS = tuple(q for q, _a, _w in (*REAL_AUTHORS, *WORLD_FACTS))


@dataclass(frozen=True)
class Probe:
    """One question, its kind (``KINDS``), the target it refers to ('' when none) and how it was made."""

    text: str
    kind: str
    target: str = ""
    via: str = ""

    def to_json(self) -> dict:
        return {"text": self.text, "kind": self.kind, "target": self.target, "via": self.via}


@dataclass
class ProbeSet:
    probes: list[Probe] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def of(self, kind: str) -> list[Probe]:
        return [p for p in self.probes if p.kind == kind]

    def texts(self, kind: str) -> list[str]:
        return [p.text for p in self.of(kind)]

    def counts(self) -> dict[str, int]:
        return {k: len(self.of(k)) for k in KINDS}


def _quoted(title: str) -> str:
    return title if title.startswith(("'", '"', "“")) else f"'{title}'"


def neighbour_questions(values: dict[str, Iterable[str]], half: str = "calibration") -> list[str]:
    """Questions about the subjects themselves: ``values`` maps a kind (work, award, place, year, date,
    job, genre, instrument, character) to the subjects of that kind."""
    if half not in NEIGHBOUR_TEMPLATES:
        raise ValueError(f"unknown template half '{half}': choose calibration or evaluation")
    out = []
    for kind, subjects in values.items():
        for tpl in NEIGHBOUR_TEMPLATES[half].get(kind, ()):
            for x in subjects:
                out.append(tpl.format(x=_quoted(x) if kind == "work" else x))
    return list(dict.fromkeys(out))


def profile_neighbours(profiles: Iterable, half: str = "calibration") -> list[str]:
    """Neighbour questions about what registered targets' profiles link them to (works, prizes, places …)."""
    from unlearnkit.data.target_profile import date_spellings

    values: dict[str, list[str]] = {}
    for p in profiles:
        for f in p.facets:
            if f.kind in ("work", "award", "place", "year", "character", "genre"):
                values.setdefault(f.kind, []).append(f.text.split(",")[0] if f.kind == "place" else f.text)
            elif f.kind == "date":
                y, m, d = (int(x) for x in f.text.split("-"))
                values.setdefault("date", []).append(date_spellings((y, m, d))[1])
            elif f.kind == "relation":
                values.setdefault("job", []).append(f.text.partition(" ")[2])
    return neighbour_questions({k: list(dict.fromkeys(v)) for k, v in values.items()}, half)


def background_neighbours(half: str = "calibration") -> list[str]:
    """Neighbour questions about every subject the built-in benchmark knows, plus general questions:
    a calibration pool that does not depend on which targets are registered."""
    a = ATTRIBUTES
    values = {"work": a["book"], "award": a["award"], "place": a["birth_city"], "year": a["birth_year"][::7],
              "job": sorted({*a["father_job"], *a["mother_job"]}), "genre": a["genre"], "instrument": a["instrument"]}
    return neighbour_questions(values, half) + list(GENERAL_QUESTIONS)


# -- the built-in benchmark's people -------------------------------------------------------------
def synthetic_people(n: int, seed: int = 0) -> list[dict]:
    """``n`` invented people, each with every attribute of the built-in benchmark (seeded)."""
    from unlearnkit.data.synthetic import person_facts, person_names

    rng = random.Random(seed)
    names = person_names(n, rng)
    people = []
    for name in names:
        records = person_facts(name, list(ATTRIBUTE_ORDER), rng)
        people.append({"name": name, "attrs": {r.meta["attribute"]: r.meta["value"] for r in records},
                       "facts": [r.answer for r in records],
                       "questions": [q for r in records for q in (r.question, r.paraphrased_question)]})
    return people


def synthetic_target(person: dict) -> Target:
    a = person["attrs"]
    description = f"a {a['genre']} writer, author of '{a['book']}'"
    return Target(person["name"], description=description, facts=tuple(person["facts"]))


def _references(a: dict) -> list[tuple[str, str, tuple[str, ...]]]:
    """(reference phrase, how, attributes it uses) for one person."""
    return [
        (f"the author of '{a['book']}'", "work", ("book",)),
        (f"the writer of '{a['book']}'", "work", ("book",)),
        (f"the {a['genre']} writer who won the {a['award']}", "award", ("award", "genre")),
        (f"the author born in {a['birth_city']} in {a['birth_year']}", "birth", ("birth_city", "birth_year")),
        (f"the writer from {a['birth_city']} born in {a['birth_year']}", "birth", ("birth_city", "birth_year")),
        (f"the author whose father was a {a['father_job']} and whose mother was a {a['mother_job']}", "relatives",
         ("father_job", "mother_job")),
    ]


_ASK = (("Who is {r}?", ()), ("What is the name of {r}?", ()), ("Tell me about {r}.", ()),
        ("Where was {r} born?", ("birth_city",)), ("Which instrument does {r} play?", ("instrument",)),
        ("What did the father of {r} do for a living?", ("father_job",)),
        ("Which award did {r} win?", ("award",)), ("In which year was {r} born?", ("birth_year",)),
        ("What genre does {r} write?", ("genre",)))
_DIRECT = ("Who wrote '{book}'?", "Who is the author of '{book}'?", "Which writer won the {award} for {genre} writing?",
           "Which author was born in {birth_city} in {birth_year}?")


def _unique(people: list[dict], attrs: tuple[str, ...], person: dict) -> bool:
    key = tuple(person["attrs"][k] for k in attrs)
    return sum(tuple(p["attrs"][k] for k in attrs) == key for p in people) == 1


def synthetic_probes(n_targets: int = 20, n_others: int = 80, seed: int = 0, per_target: int = 12,
                     half: str = "evaluation") -> ProbeSet:
    """Probes over ``n_targets + n_others`` invented people (the first ``n_targets`` are the targets).

    A reference is used only when it fits exactly one person of the population, so an ``indirect``
    probe refers to its target and an ``other`` probe to no target."""
    people = synthetic_people(n_targets + n_others, seed)
    targets, others = people[:n_targets], people[n_targets:]
    rng = random.Random(seed + 1)
    probes: list[Probe] = []
    for group, kind in ((targets, "indirect"), (others, "other")):
        for p in group:
            a = p["attrs"]
            made = []
            for ref, how, used in _references(a):
                if not _unique(people, used, p):
                    continue
                for tpl, asks in _ASK:
                    if not set(asks) & set(used):
                        made.append(Probe(tpl.format(r=ref), kind, p["name"] if kind == "indirect" else "", how))
            for tpl in _DIRECT:
                used = tuple(k for k in ATTRIBUTE_ORDER if "{" + k + "}" in tpl)
                if _unique(people, used, p):
                    made.append(Probe(tpl.format(**a), kind, p["name"] if kind == "indirect" else "", "direct"))
            probes.extend(rng.sample(made, min(per_target, len(made))))
    values: dict[str, list[str]] = {"work": [], "award": [], "place": [], "year": [], "job": [], "genre": [],
                                    "instrument": []}
    for p in targets:
        a = p["attrs"]
        values["work"].append(a["book"])
        values["award"].append(a["award"])
        values["place"].append(a["birth_city"])
        values["year"].append(a["birth_year"])
        values["job"] += [a["father_job"], a["mother_job"]]
        values["genre"].append(a["genre"])
        values["instrument"].append(a["instrument"])
    probes += [Probe(q, "neighbour", via="template") for q in
               neighbour_questions({k: list(dict.fromkeys(v)) for k, v in values.items()}, half)]
    probes += [Probe(q, "unrelated", via="other-person") for p in others for q in p["questions"][:4]]
    probes += [Probe(q, "unrelated", via="general") for q in GENERAL_QUESTIONS]
    return ProbeSet(probes, [synthetic_target(p) for p in targets])


# -- TOFU ----------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}; point to a TOFU copy (e.g. /work/shared/data/tofu)") from exc


def tofu_authors(root: str | Path, split: str = "full") -> list[dict]:
    """TOFU's authors in order: name (the one most of the block's questions spell), questions, answers."""
    from unlearnkit.data.records import QARecord
    from unlearnkit.data.tofu_benchmark import AUTHOR_BLOCK, author_name

    rows = _read_jsonl(Path(root) / f"{split}.jsonl")
    out = []
    for i in range(0, len(rows) - len(rows) % AUTHOR_BLOCK, AUTHOR_BLOCK):
        block = rows[i:i + AUTHOR_BLOCK]
        name = author_name([QARecord(question=r["question"], answer=r["answer"]) for r in block])
        out.append({"name": name or f"author {i // AUTHOR_BLOCK}", "questions": [r["question"] for r in block],
                    "answers": [r["answer"] for r in block],
                    "paraphrased": [r.get("paraphrased_question", "") for r in block]})
    return out


def tofu_target(author: dict) -> Target:
    return Target(author["name"], facts=tuple(author["answers"]))


def load_tofu_probes(root: str | Path, forget: str = "forget10", n_others: int = 60, seed: int = 0,
                     half: str = "evaluation") -> ProbeSet:
    """TOFU probes: the ``forget`` split's authors are the targets.

    ``indirect``: their questions (and paraphrased questions, where the split has them) that never
    name them, plus their named questions with the name replaced by "the author of '<title>'" (a title
    quoted in the author's own answers); ``other``: the same for ``n_others`` retain authors;
    ``neighbour``: questions about the targets' titles, prizes and birthplaces; ``unrelated``: the
    retain authors' named questions and TOFU's world facts."""
    from unlearnkit.data.target_matching import TargetMatcher, TermFinder
    from unlearnkit.data.target_profile import _QUOTED, local_profile, mask_names

    root = Path(root)
    authors = tofu_authors(root, "full")
    forget_rows = _read_jsonl(root / f"{forget}.jsonl")
    n_forget = len(forget_rows) // 20
    if n_forget < 1 or n_forget >= len(authors):
        raise DataError(f"{root}/{forget}.jsonl does not hold whole TOFU author blocks")
    perturbed = root / f"{forget}_perturbed.jsonl"
    if perturbed.is_file():
        para = [r.get("paraphrased_question", "") for r in _read_jsonl(perturbed)]
        for j, a in enumerate(authors[-n_forget:]):
            a["paraphrased"] = para[j * 20:(j + 1) * 20]
    targets = authors[-n_forget:]
    rng = random.Random(seed)
    others = rng.sample(authors[:-n_forget], min(n_others, len(authors) - n_forget))
    probes: list[Probe] = []
    for group, kind in ((targets, "indirect"), (others, "other")):
        for a in group:
            target = tofu_target(a)
            matcher = TargetMatcher([target])
            owner = a["name"] if kind == "indirect" else ""
            for q in [*a["questions"], *[p for p in a.get("paraphrased", []) if p]]:
                if not matcher.mentions(q):
                    probes.append(Probe(q, kind, owner, "tofu-unnamed"))
            titles = [m.group(1) or m.group(2) for ans in a["answers"] for m in _QUOTED.finditer(ans)]
            titles = [t.strip(" ,.") for t in titles if t and t[:1].isupper()]
            if titles:
                names = TermFinder(target.names)
                ref = f"the author of '{titles[0]}'"
                for q in a["questions"][1:6]:
                    if matcher.mentions(q):
                        masked = mask_names(q.replace("author ", ""), names, ref)
                        probes.append(Probe(masked, kind, owner, "tofu-title"))
    profiles = [local_profile(tofu_target(a)) for a in targets]
    probes += [Probe(q, "neighbour", via="template") for q in profile_neighbours(profiles, half)]
    probes += [Probe(q, "unrelated", via="other-person") for a in others for q in a["questions"][1:5]]
    world = root / "world_facts.jsonl"
    if world.is_file():
        probes += [Probe(r["question"], "unrelated", via="world-facts") for r in _read_jsonl(world)]
    return ProbeSet(probes, [tofu_target(a) for a in targets])


def write_probes(probes: Sequence[Probe], path: str | Path) -> Path:
    """Write probes as JSON Lines, atomically."""
    from unlearnkit.io import write_text_atomic

    text = "".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in probes)
    return write_text_atomic(Path(path), text)


__all__ = ["GENERAL_QUESTIONS", "KINDS", "NEIGHBOUR_TEMPLATES", "Probe", "ProbeSet", "background_neighbours",
           "load_tofu_probes", "neighbour_questions", "profile_neighbours", "synthetic_people", "synthetic_probes",
           "synthetic_target", "tofu_authors", "tofu_target", "write_probes"]
