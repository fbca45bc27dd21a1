"""What identifies a target besides its name: its **profile**.

Users often refer to someone without naming them ("Who played Inspector Vale?", "the author
born in Kuwait City on 08/09/1956"). A profile lists what such a question can hold, read from
the registered target (``data/targets.Target``):

* ``name`` / ``alias``: the names (matched as today by ``data/target_matching``);
* **facets** found in the description and facts: ``work`` (a quoted title, or a capitalised
  title after "series", "book", "novel", "film" …), ``character`` (after "played" / "as"),
  ``award`` (a capitalised run ending in Prize, Award, Medal …), ``date`` (a full date, in any
  of several formats, kept as year-month-day), ``year``, ``place`` (a capitalised run after
  "born in", "from", "city of" …), ``role`` (actor, author, novelist …), ``relation`` (what a
  father, mother, spouse … was or is);
* **statements**: the description and facts with every name replaced by the target's role
  ("the actor played Inspector Vale"), plus a reference phrase per facet ("the actor known for
  Harbour Lights"): what a question that refers to the target resembles.

``build_profile(target, profile_model=...)`` may also ask an OpenAI-compatible endpoint what the
entity is known for and how people refer to it; each line it returns becomes a statement. When
the endpoint cannot be reached, the local profile is kept and ``expansion`` records why.

A target with a name only has no facet: name matching still works, and ``warnings`` says that
questions which do not name it cannot be caught without a description or facts.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from unlearnkit.data.target_matching import TermFinder, words
from unlearnkit.data.targets import Target

log = logging.getLogger(__name__)

FACET_KINDS = ("name", "alias", "name_part", "work", "character", "award", "date", "year", "place", "role", "relation", "genre")
DISTINCTIVE = frozenset({"name", "alias", "name_part", "work", "character", "award", "date"})
"""Facet kinds that identify a target on their own when a question spells them exactly."""

ROLES = ("actor", "actress", "author", "writer", "novelist", "poet", "playwright", "screenwriter", "journalist",
         "singer", "songwriter", "musician", "composer", "rapper", "painter", "artist", "sculptor", "photographer",
         "director", "producer", "presenter", "comedian", "dancer", "politician", "senator", "minister", "mayor",
         "scientist", "physicist", "chemist", "mathematician", "economist", "philosopher", "historian", "engineer",
         "architect", "inventor", "entrepreneur", "businessman", "businesswoman", "founder", "athlete", "footballer",
         "player", "coach", "chef", "doctor", "lawyer", "judge", "activist", "influencer", "streamer", "model")
RELATIONS = ("father", "mother", "parents", "son", "daughter", "brother", "sister", "wife", "husband", "spouse",
             "partner", "grandfather", "grandmother", "uncle", "aunt", "cousin", "mentor")
PERSON_WORDS = ("person", "someone", "somebody", "man", "woman", "he", "she", "him", "his", "her", "whose", "born",
                "won", "awarded", "received", "birthplace", "nationality", "gender", "parents", "father", "mother",
                "wife", "husband", "childhood", "name")
"""Words that make a question about a person rather than about a work, place or date."""
ROLE_WORDS = {
    "writing": ("author", "authors", "writer", "writers", "novelist", "poet", "playwright", "screenwriter", "wrote",
                "written", "writes", "authored", "penned"),
    "acting": ("actor", "actress", "star", "starred", "stars", "played", "plays", "portrayed", "portrays", "cast",
               "acted", "performer", "voiced"),
    "music": ("singer", "songwriter", "musician", "composer", "rapper", "sang", "sings", "composed", "recorded",
              "band", "performer"),
    "art": ("painter", "artist", "sculptor", "photographer", "painted", "sculpted"),
    "screen": ("director", "producer", "presenter", "directed", "produced", "hosted", "host"),
    "politics": ("politician", "senator", "minister", "mayor", "elected", "served"),
    "science": ("scientist", "physicist", "chemist", "mathematician", "economist", "philosopher", "historian",
                "engineer", "researcher", "discovered", "invented", "inventor"),
    "sport": ("athlete", "footballer", "player", "coach", "scored", "played", "team"),
}
ROLE_GROUP = {"actor": "acting", "actress": "acting", "author": "writing", "writer": "writing", "novelist": "writing",
              "poet": "writing", "playwright": "writing", "screenwriter": "writing", "journalist": "writing",
              "singer": "music", "songwriter": "music", "musician": "music", "composer": "music", "rapper": "music",
              "painter": "art", "artist": "art", "sculptor": "art", "photographer": "art", "director": "screen",
              "producer": "screen", "presenter": "screen", "politician": "politics", "senator": "politics",
              "minister": "politics", "mayor": "politics", "scientist": "science", "physicist": "science",
              "chemist": "science", "mathematician": "science", "economist": "science", "philosopher": "science",
              "historian": "science", "engineer": "science", "inventor": "science", "athlete": "sport",
              "footballer": "sport", "player": "sport", "coach": "sport"}
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MONTH = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|" \
         r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
DATE_PATTERNS = (
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?({_MONTH})\.?,?\s+(\d{{4}})\b", re.I)),
    ("mdy", re.compile(rf"\b({_MONTH})\.?\s+{_DAY},?\s+(\d{{4}})\b", re.I)),
    ("iso", re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")),
    ("num", re.compile(r"\b(\d{1,2})[/.](\d{1,2})[/.](\d{4})\b")),
)
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]{2,80})[\"“”«»]|(?<![\w])['‘’]([^'‘’]{2,80}?)['‘’](?![\w])")
_CAP = r"[A-Z][\w'’\-]*"
_CAP_RUN = rf"{_CAP}(?:\s+(?:of|the|and|de|du|la|le|in|on|for|a|an|by)?\s*{_CAP})*"
_CAP_NAME = rf"{_CAP}(?:\s+(?:of|de|du|da|la|le|van|von)?\s*{_CAP})*"  # a person's or a place's name
_WORK_CUE = re.compile(rf"\b(?:series|book|novel|film|movie|show|sitcom|drama|album|song|play|musical|opera|"
                       rf"game|novella|memoir|poem|collection|trilogy|saga)\s+(?:called\s+|titled\s+|named\s+)?"
                       rf"({_CAP_RUN})")
_CHARACTER_CUE = re.compile(rf"\b(?:plays|played|playing|portrays|portrayed|voices|voiced|cast\s+as|role\s+of|character)\s+({_CAP_NAME})")
_AWARD = re.compile(rf"(?:the\s+)?({_CAP}(?:\s+{_CAP})*\s+(?:Prize|Award|Medal|Laurel|Trophy|Cup|Fellowship|"
                    rf"Oscar|Emmy|Grammy|Goncourt)s?)\b|\b((?:Prix|Premio|Premi)\s+{_CAP}(?:\s+{_CAP})*)")
_PLACE_CUE = re.compile(rf"\b(?i:born\s+(?:and\s+raised\s+)?in|grew\s+up\s+in|raised\s+in|lives\s+in|lived\s+in|"
                        rf"from|city\s+of|native|birthplace\s+is|hometown\s+is|based\s+in|hailing\s+from|"
                        rf"upbringing\s+in|birthplace,|hometown,)\s+(?:the\s+(?:city|town|village)\s+of\s+)?"
                        rf"({_CAP_NAME}(?:,\s*{_CAP_NAME})?)")
_CITY_COUNTRY = re.compile(rf"\bin\s+({_CAP_NAME},\s*{_CAP_NAME})(?=[\s,.;:!?)]|$)")
"""A place spelled as "in City, Country" whatever comes before it ("… mother in Cape Town, South Africa")."""
_NOT_PLACE_AFTER = re.compile(r"\s+(?:culture|literature|history|roots|heritage|style|cuisine|music|art)\b", re.I)
_ROLE = re.compile(r"(?:\b(?:an?|the|this|that)\s+|^)(?:[a-z\-]+\s+){0,3}?(" + "|".join(ROLES) + r")s?\b", re.I)
_TRADE_END = r"(?=[,.;:!?]|\s+(?:and|who|whose|which|that|while|in|with|at|by|from|for|of|well-versed)\b|$)"
_RELATION = re.compile(r"\b(" + "|".join(RELATIONS) + r")(?:'s)?\s+(?:(?:was|is|were|are|worked\s+as|working\s+as|"
                       r"being)\s+(?:an?\s+|the\s+)?|an?\s+)([a-z][a-z\- ]{2,40}?)" + _TRADE_END, re.I)
_RELATION_BEFORE = re.compile(r"\bto\s+an?\s+([a-z][a-z\-]+)\s+(father|mother)\s+and\s+(?:an?\s+)?([a-z][a-z\-]+)\s+"
                              r"(father|mother)\b", re.I)
"""Both parents' trades before the relation words: "born to a lawyer father and zoologist mother"."""
TRADE_ADJECTIVES = frozenset("""highly very well much esteemed respected respectable renowned well-known famous successful
    skilled dedicated distinguished notable noted talented professional local accomplished prominent celebrated
    hard-working hardworking practicing practising acclaimed experienced devoted humble proud loving diligent
    passionate reputable seasoned competent fine great good gifted brilliant busy self-employed wise
    well-regarded both""".split())
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
_GENRE = re.compile(r"\b(?:writes|wrote|writing)\s+([a-z]+)\s+(?:books|novels|fiction|stories)\b|"
                    r"\b(?:in|to|within|of)\s+the\s+([A-Za-z][\w+\-]*(?:\s[A-Za-z][\w+\-]*)?)\s+(?:literary\s+)?genre\b|"
                    r"\b(?:his|her|their|its)\s+([A-Za-z][\w+\-]*(?:\s[A-Za-z][\w+\-]*)?)\s+genre\b|"
                    r"\bgenre\s+of\s+([A-Za-z][\w+\-]*(?:\s[a-z][\w+\-]*)?)")
NOT_GENRE = frozenset("""same chosen particular specific literary whole entire this that own new other respective favourite
    favorite preferred primary main writing unique compelling popular broader wider very a an the his her their its
    of in books book work works fiction literature novel novels""".split())
"""Words that sit where a genre's name does ("the same genre", "his primary writing genre") but name none."""


@dataclass(frozen=True)
class Facet:
    """One thing that identifies a target: its ``kind`` (see ``FACET_KINDS``), its surface ``text``,
    the ``statement`` a referring question resembles, and where it came from."""

    kind: str
    text: str
    statement: str = ""
    source: str = "target"  # target | description | fact | model

    @property
    def distinctive(self) -> bool:
        return self.kind in DISTINCTIVE

    def to_json(self) -> dict:
        return {"kind": self.kind, "text": self.text, "statement": self.statement, "source": self.source}


@dataclass(frozen=True)
class TargetProfile:
    """A target, its facets and statements, and what building them noticed."""

    target: Target
    facets: tuple[Facet, ...]
    statements: tuple[str, ...] = ()
    role: str = "person"
    warnings: tuple[str, ...] = ()
    anchors: frozenset = frozenset()
    expansion: dict = field(default_factory=lambda: {"status": "off"})

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def indirect(self) -> bool:
        """Whether anything beyond the names identifies the target (else only names can be caught)."""
        return bool(self.statements) or any(f.kind not in ("name", "alias", "name_part") for f in self.facets)

    def of_kind(self, *kinds: str) -> list[Facet]:
        return [f for f in self.facets if f.kind in kinds]

    def to_json(self) -> dict:
        return {"name": self.name, "role": self.role, "anchors": sorted(self.anchors),
                "facets": [f.to_json() for f in self.facets],
                "statements": list(self.statements), "warnings": list(self.warnings), "expansion": self.expansion}


# -- dates -------------------------------------------------------------------------------
def _month(text: str) -> int | None:
    t = text.lower().rstrip(".")
    for i, m in enumerate(MONTHS, 1):
        if m.startswith(t[:3]):
            return i
    return None


def _valid(y: int, m: int, d: int) -> bool:
    try:
        _dt.date(y, m, d)
        return True
    except ValueError:
        return False


def find_dates(text: str) -> list[tuple[str, set[tuple[int, int, int]]]]:
    """Full dates in ``text``: (the text spelled, its possible (year, month, day) readings).

    A numeric date like 08/09/1956 has two readings (day first, month first) when both are valid."""
    out: list[tuple[str, set[tuple[int, int, int]]]] = []
    for kind, pattern in DATE_PATTERNS:
        for m in pattern.finditer(text):
            g = m.groups()
            readings: set[tuple[int, int, int]] = set()
            if kind == "dmy":
                d, mo, y = int(g[0]), _month(g[1]), int(g[2])
                readings.add((y, mo or 0, d))
            elif kind == "mdy":
                mo, d, y = _month(g[0]), int(g[1]), int(g[2])
                readings.add((y, mo or 0, d))
            elif kind == "iso":
                readings.add((int(g[0]), int(g[1]), int(g[2])))
            else:
                a, b, y = int(g[0]), int(g[1]), int(g[2])
                readings |= {(y, b, a), (y, a, b)}
            readings = {r for r in readings if _valid(*r)}
            if readings:
                out.append((m.group(0), readings))
    return out


def date_key(reading: tuple[int, int, int]) -> str:
    y, m, d = reading
    return f"{y:04d}-{m:02d}-{d:02d}"


def date_spellings(reading: tuple[int, int, int]) -> list[str]:
    """Common spellings of one date (for statements and documentation)."""
    y, m, d = reading
    month = MONTHS[m - 1].capitalize()
    return [f"{d} {month} {y}", f"{month} {d}, {y}", f"{d:02d}/{m:02d}/{y}", f"{y:04d}-{m:02d}-{d:02d}"]


# -- extraction ------------------------------------------------------------------------------
def _strip_run(run: str, names: TermFinder) -> str:
    run = re.sub(r"^(?:The|A|An)\s+", "", run.strip(" ,.;:'’\"")).strip()
    run = re.sub(r"[,\s]+$", "", run)
    return "" if not run or names.found(run) or run.lower() in ROLES else run


def mask_names(text: str, names: TermFinder, replacement: str) -> str:
    """``text`` with every spelling of the target's names replaced by ``replacement`` (possessives kept)."""
    spans = names.spans(text)
    if not spans:
        return text
    out, end = [], 0
    for start, stop in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < end:
            continue
        out.append(text[end:start] + replacement)
        end = stop
    return "".join(out) + text[end:]


def _trade(value: str) -> str:
    """A relative's trade without the praise around it: "highly esteemed artist" → "artist"."""
    parts = value.strip().lower().split()
    while parts and parts[0] in TRADE_ADJECTIVES:
        parts = parts[1:]
    return " ".join(parts[:3])


def _role_of(texts: Iterable[str]) -> str:
    """The role most often given (the first text, the description, counts double); a role given to a
    relative ("his mother was a doctor") is not the target's."""
    counts: dict[str, int] = {}
    for n, t in enumerate(texts):
        for m in _ROLE.finditer(t):
            before = t[max(0, m.start() - 40):m.start()].lower()
            if any(re.search(rf"\b{r}\b", before) for r in RELATIONS):
                continue
            r = m.group(1).lower()
            counts[r] = counts.get(r, 0) + (2 if n == 0 else 1)
    return max(counts, key=lambda r: (counts[r], -ROLES.index(r))) if counts else ""


def extract_facets(target: Target) -> tuple[list[Facet], str]:
    """The facets named in the target's description and facts, and its role ("" when none is named)."""
    names = TermFinder(target.names)
    texts = [("description", target.description)] + [("fact", f) for f in target.facts]
    texts = [(src, t) for src, t in texts if t and t.strip()]
    role = _role_of([target.description, *target.facts])
    facets: list[Facet] = [Facet("name", target.name)] + [Facet("alias", a) for a in target.aliases]
    for n in target.names:  # a surname alone ("How has Majumdar's background …"): the name filter needs all parts
        parts = [p for p in re.findall(r"[^\W\d_][\w'’\-]*", n) if len(p) >= 4 and p[:1].isupper()]
        if len(parts) >= 2 and len(parts) <= 4:
            facets += [Facet("name_part", p, source="target") for p in parts[1:]]
    if role:
        facets.append(Facet("role", role, source="description"))
    seen = {(f.kind, " ".join(words(f.text))) for f in facets}

    def add(kind: str, text: str, src: str):
        key = (kind, " ".join(words(text)))
        if text and key[1] and key not in seen and not names.found(text):
            seen.add(key)
            facets.append(Facet(kind, text, source=src))

    from unlearnkit.evaluation.keywords import STOPWORDS

    for src, text in texts:
        taken: list[str] = []
        for _spelled, readings in find_dates(text):
            for r in sorted(readings):
                add("date", date_key(r), src)
            taken.append(_spelled)
        rest = text
        for t in taken:
            rest = rest.replace(t, " ")
        for m in _YEAR.finditer(rest):
            add("year", m.group(1), src)
        for m in _QUOTED.finditer(text):
            title = (m.group(1) or m.group(2) or "").strip(" ,.;:")
            if title and (title[:1].isupper() or title[:1].isdigit()):
                award = _AWARD.fullmatch(title)
                add("award" if award else "work", title, src)
        for m in _WORK_CUE.finditer(text):
            add("work", _strip_run(m.group(1), names), src)
        for m in _CHARACTER_CUE.finditer(text):
            run = _strip_run(m.group(1), names)
            if run and not any(f.kind == "work" and f.text == run for f in facets):
                add("character", run, src)
        for m in _AWARD.finditer(text):
            add("award", _strip_run(m.group(1) or m.group(2), names), src)
        for m in (*_PLACE_CUE.finditer(text), *_CITY_COUNTRY.finditer(text)):
            if _NOT_PLACE_AFTER.match(text, m.end()):
                continue  # "from Middle Eastern culture": an adjective, not a place
            run = _strip_run(m.group(1), names)
            if run and not any(f.text == run for f in facets):
                add("place", run, src)
        trades = [(m.group(1), m.group(2)) for m in _RELATION.finditer(text)]
        for m in _RELATION_BEFORE.finditer(text):
            trades += [(m.group(2), m.group(1)), (m.group(4), m.group(3))]
        for relation, value in trades:
            trade = _trade(value)
            if trade:
                add("relation", f"{relation.lower()} {trade}", src)
        for m in _GENRE.finditer(text):
            genre = [w for w in next(g for g in m.groups() if g).split() if w.lower() != "literary"]
            while genre and genre[-1].lower() in STOPWORDS:  # "the genre of leadership through …"
                genre.pop()
            genre = " ".join(genre)
            if genre and not set(genre.lower().split()) & NOT_GENRE:
                add("genre", genre, src)
    return facets, role


_REFERENCE = {
    "work": "the {role} of {text}; the {role} known for {text}",
    "character": "the {role} who played {text}",
    "award": "the {role} who won the {text}",
    "place": "the {role} born in {text}; the {role} from {text}",
    "year": "the {role} born in {text}",
    "relation": "the {role} whose {text}",
    "role": "the {text}",
    "genre": "the {text} {role}",
}


def _statement(facet: Facet, role: str) -> str:
    if facet.kind == "date":
        y, m, d = (int(x) for x in facet.text.split("-"))
        return f"the {role} born on {date_spellings((y, m, d))[0]}"
    if facet.kind == "relation":
        rel, _, value = facet.text.partition(" ")
        art = "an" if value[:1] in "aeiou" else "a"
        return f"the {role} whose {rel} was {art} {value}"
    tpl = _REFERENCE.get(facet.kind)
    return tpl.format(role=role, text=facet.text) if tpl else ""


def local_profile(target: Target) -> TargetProfile:
    """The profile read from the target alone (no model)."""
    facets, role = extract_facets(target)
    who = role or "person"
    names = TermFinder(target.names)
    statements: list[str] = []
    for text in (target.description, *target.facts):
        if text and text.strip():
            masked = mask_names(text, names, f"the {who}")
            if masked.strip():
                statements.append(masked.strip())
    facets = [f if f.kind in ("name", "alias") else Facet(f.kind, f.text, _statement(f, who), f.source)
              for f in facets]
    statements.extend(f.statement for f in facets if f.statement)
    warnings = []
    if not target.description.strip() and not any(f.strip() for f in target.facts):
        warnings.append(f"target '{target.name}' has a name only: questions that refer to it without its name "
                        "(by its works, roles, places or dates) cannot be caught; register it with a description "
                        "or facts")
    return TargetProfile(target, tuple(facets), tuple(dict.fromkeys(statements)), who, tuple(warnings),
                         anchors=anchor_words(target, role))


_VERB_BEFORE = re.compile(r"\b([a-z]{3,}(?:ed|ote|on|ayed|ays|arred|ars))\s+(?:the\s+|in\s+|as\s+)?(?=[A-Z'\"‘“])")


def anchor_words(target: Target, role: str) -> frozenset:
    """Words that tie a question to the person: person words, the role's words, and the verbs the
    target's own texts put before a name-like run ("played Inspector Vale", "won the Prix Goncourt")."""
    out = set(PERSON_WORDS)
    out |= set(ROLE_WORDS.get(ROLE_GROUP.get(role, ""), ()))
    if role:
        out |= {role, role + "s"}
    for text in (target.description, *target.facts):
        for m in _VERB_BEFORE.finditer(text or ""):
            out.add(m.group(1).lower())
    return frozenset(out)


# -- expansion by a language model -------------------------------------------------------------
EXPANSION_PROMPT = ("In at most 8 short lines, one per line, no numbering: what is {name} known for, and how do "
                    "people refer to {name} without using the name (roles, works, characters, places, dates)?\n"
                    "What we know: {about}")


def expand_profile(profile: TargetProfile, model) -> TargetProfile:
    """Ask ``model`` (a ``LanguageModel`` or an OpenAI-compatible URL) for more ways to refer to the target.

    Each line of the answer becomes a statement (names masked); its quoted titles become ``work``
    facets. An unreachable or failing endpoint keeps the local profile and says so in ``expansion``."""
    from unlearnkit.models.remote import OpenAIChatModel, RemoteModelError

    spec = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    t = profile.target
    about = " ".join([t.description, *t.facts[:5]]).strip() or "nothing beyond the name"
    try:
        lm = OpenAIChatModel.from_url(model, timeout=10.0, max_retries=1) if isinstance(model, str) else model
        answer = lm.generate([EXPANSION_PROMPT.format(name=t.name, about=about)], max_new_tokens=200)[0]
    except (RemoteModelError, OSError, TypeError, ValueError) as exc:
        log.warning("profile expansion of '%s' by %s failed (%s): keeping the local profile", t.name, spec, exc)
        return TargetProfile(profile.target, profile.facets, profile.statements, profile.role, profile.warnings,
                             profile.anchors, {"status": "unavailable", "model": spec, "error": f"{type(exc).__name__}: {exc}"})
    names = TermFinder(t.names)
    lines = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", ln).strip() for ln in (answer or "").splitlines()]
    lines = [mask_names(ln, names, f"the {profile.role}") for ln in lines if len(ln) > 3][:8]
    facets = list(profile.facets)
    known = {(f.kind, f.text) for f in facets}
    for ln in lines:
        for m in _QUOTED.finditer(ln):
            title = (m.group(1) or m.group(2) or "").strip(" ,.;:")
            if title and ("work", title) not in known and not names.found(title):
                known.add(("work", title))
                facets.append(Facet("work", title, _statement(Facet("work", title), profile.role), "model"))
    statements = tuple(dict.fromkeys([*profile.statements, *lines]))
    return TargetProfile(profile.target, tuple(facets), statements, profile.role, profile.warnings,
                         profile.anchors, {"status": "ok", "model": spec, "lines": len(lines)})


_WARNED: set[str] = set()


def build_profile(target: Target, profile_model=None) -> TargetProfile:
    """The target's profile: read from the target, then (optionally) expanded by ``profile_model``."""
    profile = local_profile(target)
    for w in profile.warnings:  # once per process: the profiles are rebuilt on every change of the target list
        if w not in _WARNED:
            _WARNED.add(w)
            log.warning(w)
    if profile_model:
        profile = expand_profile(profile, profile_model)
    return profile


__all__ = ["DISTINCTIVE", "FACET_KINDS", "Facet", "TargetProfile", "build_profile", "date_key", "date_spellings",
           "expand_profile", "extract_facets", "find_dates", "local_profile", "mask_names"]
