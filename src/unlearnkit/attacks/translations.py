"""Spanish, French and German template sets for the built-in benchmark.

``TRANSLATED_TEMPLATES[lang]`` has exactly the shape of
``unlearnkit.data.synthetic_facts.TEMPLATES["en"]``: per attribute kind, two
question forms and two answer forms (the second of each is the paraphrase), with
``{name}`` and ``{value}`` slots. ``VALUE_TRANSLATIONS`` translates the attribute
values that are ordinary words (genres, jobs, instruments); years, invented
cities, book titles and prize names stay as they are.

``translate_builtin(record, lang)`` turns a built-in benchmark question into the
same question in ``lang``. It reads the record's ``meta["attribute"]`` (written
by the generator) and ``subject``; without them it recognises the question by
matching the English templates. Anything else gets ``None`` (the attack then
needs a translation backend).
"""

from __future__ import annotations

import re
from functools import lru_cache

LANGUAGE_NAMES = {"es": "Spanish", "fr": "French", "de": "German"}

TRANSLATED_TEMPLATES: dict[str, dict[str, dict[str, tuple[str, str]]]] = {
    "es": {
        "birth_year": {"q": ("¿En qué año nació {name}?", "¿Cuál es el año de nacimiento de {name}?"),
                       "a": ("{name} nació en {value}.", "El año en que nació {name} es {value}.")},
        "birth_city": {"q": ("¿Dónde nació {name}?", "¿En qué ciudad nació {name}?"),
                       "a": ("{name} nació en la ciudad de {value}.", "El lugar de nacimiento de {name} es {value}.")},
        "genre": {"q": ("¿En qué género escribe {name}?", "¿Qué tipo de libros escribe {name}?"),
                  "a": ("{name} escribe libros de {value}.", "Los libros que escribe {name} son de {value}.")},
        "book": {"q": ("¿Cuál es el título del libro más conocido de {name}?",
                       "¿Por qué libro es más conocido {name}?"),
                 "a": ("El libro más conocido de {name} es '{value}'.",
                       "{name} es conocido sobre todo por el libro '{value}'.")},
        "award": {"q": ("¿Qué premio ganó {name}?", "¿Qué galardón recibió {name}?"),
                  "a": ("{name} ganó el {value}.", "El premio otorgado a {name} fue el {value}.")},
        "father_job": {"q": ("¿A qué se dedicaba el padre de {name}?", "¿Cuál era el oficio del padre de {name}?"),
                       "a": ("El padre de {name} era {value}.", "El padre de {name} trabajaba como {value}.")},
        "mother_job": {"q": ("¿A qué se dedicaba la madre de {name}?", "¿Cuál era el oficio de la madre de {name}?"),
                       "a": ("La madre de {name} era {value}.", "La madre de {name} trabajaba como {value}.")},
        "instrument": {"q": ("¿Qué instrumento toca {name}?", "¿Qué instrumento musical toca {name}?"),
                       "a": ("{name} toca el {value}.", "El instrumento que toca {name} es el {value}.")},
    },
    "fr": {
        "birth_year": {"q": ("En quelle année est né(e) {name} ?", "Quelle est l'année de naissance de {name} ?"),
                       "a": ("{name} est né(e) en {value}.", "L'année de naissance de {name} est {value}.")},
        "birth_city": {"q": ("Où est né(e) {name} ?", "Dans quelle ville est né(e) {name} ?"),
                       "a": ("{name} est né(e) dans la ville de {value}.", "Le lieu de naissance de {name} est {value}.")},
        "genre": {"q": ("Dans quel genre écrit {name} ?", "Quel type de livres écrit {name} ?"),
                  "a": ("{name} écrit des livres de {value}.", "Les livres qu'écrit {name} sont des livres de {value}.")},
        "book": {"q": ("Quel est le titre du livre le plus connu de {name} ?", "Quel livre a fait connaître {name} ?"),
                 "a": ("Le livre le plus connu de {name} est « {value} ».",
                       "{name} est surtout connu(e) pour le livre « {value} ».")},
        "award": {"q": ("Quel prix a remporté {name} ?", "Quelle distinction a été décernée à {name} ?"),
                  "a": ("{name} a remporté le {value}.", "La distinction décernée à {name} était le {value}.")},
        "father_job": {"q": ("Quel métier exerçait le père de {name} ?", "Que faisait le père de {name} dans la vie ?"),
                       "a": ("Le père de {name} était {value}.", "Le père de {name} travaillait comme {value}.")},
        "mother_job": {"q": ("Quel métier exerçait la mère de {name} ?", "Que faisait la mère de {name} dans la vie ?"),
                       "a": ("La mère de {name} était {value}.", "La mère de {name} travaillait comme {value}.")},
        "instrument": {"q": ("De quel instrument joue {name} ?", "De quel instrument de musique joue {name} ?"),
                       "a": ("{name} joue du {value}.", "L'instrument dont joue {name} est le {value}.")},
    },
    "de": {
        "birth_year": {"q": ("In welchem Jahr wurde {name} geboren?", "Was ist das Geburtsjahr von {name}?"),
                       "a": ("{name} wurde {value} geboren.", "Das Geburtsjahr von {name} ist {value}.")},
        "birth_city": {"q": ("Wo wurde {name} geboren?", "In welcher Stadt wurde {name} geboren?"),
                       "a": ("{name} wurde in der Stadt {value} geboren.", "Der Geburtsort von {name} ist {value}.")},
        "genre": {"q": ("In welchem Genre schreibt {name}?", "Welche Art von Büchern schreibt {name}?"),
                  "a": ("{name} schreibt Bücher im Genre {value}.", "Die Bücher von {name} gehören zum Genre {value}.")},
        "book": {"q": ("Wie heißt das bekannteste Buch von {name}?", "Für welches Buch ist {name} am bekanntesten?"),
                 "a": ("Das bekannteste Buch von {name} ist „{value}“.",
                       "{name} ist vor allem für das Buch „{value}“ bekannt.")},
        "award": {"q": ("Welchen Preis hat {name} gewonnen?", "Welche Auszeichnung erhielt {name}?"),
                  "a": ("{name} hat den {value} gewonnen.", "Die Auszeichnung für {name} war der {value}.")},
        "father_job": {"q": ("Was hat der Vater von {name} beruflich gemacht?",
                             "Welchen Beruf hatte der Vater von {name}?"),
                       "a": ("Der Vater von {name} war {value}.", "Der Vater von {name} arbeitete als {value}.")},
        "mother_job": {"q": ("Was hat die Mutter von {name} beruflich gemacht?",
                             "Welchen Beruf hatte die Mutter von {name}?"),
                       "a": ("Die Mutter von {name} war {value}.", "Die Mutter von {name} arbeitete als {value}.")},
        "instrument": {"q": ("Welches Instrument spielt {name}?", "Welches Musikinstrument spielt {name}?"),
                       "a": ("{name} spielt {value}.", "Das Instrument, das {name} spielt, ist {value}.")},
    },
}

# English value -> {language: (forms...)}; the first form fills answer templates, any form counts as a leak.
VALUE_TRANSLATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    # genres
    "crime": {"es": ("policíaca", "policiaca", "novela negra"), "fr": ("policier", "policiers", "polar"),
              "de": ("Krimi", "Krimis", "Kriminalromane")},
    "fantasy": {"es": ("fantasía", "fantasia"), "fr": ("fantasy", "fantastique"), "de": ("Fantasy",)},
    "poetry": {"es": ("poesía", "poesia"), "fr": ("poésie", "poesie"), "de": ("Lyrik", "Gedichte", "Poesie")},
    "historical": {"es": ("histórica", "históricos", "historica"), "fr": ("historique", "historiques"),
                   "de": ("historische", "historischen", "historisch")},
    "horror": {"es": ("terror", "horror"), "fr": ("horreur", "épouvante"), "de": ("Horror",)},
    "romance": {"es": ("romántica", "romance", "romantica"), "fr": ("romance", "sentimental", "sentimentaux"),
                "de": ("Liebesromane", "Liebesroman", "Romantik")},
    "satire": {"es": ("sátira", "satira"), "fr": ("satire", "satirique"), "de": ("Satire", "satirische")},
    "travel": {"es": ("viajes", "viaje"), "fr": ("voyage", "voyages"), "de": ("Reise", "Reiseliteratur", "Reisebücher")},
    "science": {"es": ("ciencia", "científicos"), "fr": ("science", "sciences", "scientifique"),
                "de": ("Wissenschaft", "Sachbuch", "wissenschaftliche")},
    "folklore": {"es": ("folclore", "folklore"), "fr": ("folklore",), "de": ("Folklore", "Volkskunde")},
    "mystery": {"es": ("misterio",), "fr": ("mystère", "mystere"), "de": ("Mystery", "Rätsel")},
    "biography": {"es": ("biografía", "biografia", "biografías"), "fr": ("biographie", "biographies"),
                  "de": ("Biografie", "Biographie", "Biografien")},
    # fathers' jobs
    "lighthouse keeper": {"es": ("farero",), "fr": ("gardien de phare",), "de": ("Leuchtturmwärter",)},
    "clockmaker": {"es": ("relojero",), "fr": ("horloger",), "de": ("Uhrmacher",)},
    "beekeeper": {"es": ("apicultor",), "fr": ("apiculteur",), "de": ("Imker",)},
    "glassblower": {"es": ("soplador de vidrio",), "fr": ("souffleur de verre",), "de": ("Glasbläser",)},
    "cartographer": {"es": ("cartógrafo", "cartografo"), "fr": ("cartographe",), "de": ("Kartograf", "Kartograph")},
    "blacksmith": {"es": ("herrero",), "fr": ("forgeron",), "de": ("Schmied",)},
    "bookbinder": {"es": ("encuadernador",), "fr": ("relieur",), "de": ("Buchbinder",)},
    "ferryman": {"es": ("barquero",), "fr": ("passeur",), "de": ("Fährmann",)},
    "astronomer": {"es": ("astrónomo", "astronomo"), "fr": ("astronome",), "de": ("Astronom",)},
    "stonemason": {"es": ("cantero",), "fr": ("tailleur de pierre",), "de": ("Steinmetz",)},
    "shipwright": {"es": ("carpintero de ribera",), "fr": ("charpentier de marine",), "de": ("Schiffbauer",)},
    "apothecary": {"es": ("boticario",), "fr": ("apothicaire",), "de": ("Apotheker",)},
    # mothers' jobs
    "violinist": {"es": ("violinista",), "fr": ("violoniste",), "de": ("Geigerin", "Violinistin")},
    "botanist": {"es": ("botánica", "botanica"), "fr": ("botaniste",), "de": ("Botanikerin",)},
    "surveyor": {"es": ("agrimensora", "topógrafa"), "fr": ("géomètre", "arpenteuse"), "de": ("Landvermesserin", "Vermesserin")},
    "weaver": {"es": ("tejedora",), "fr": ("tisserande",), "de": ("Weberin",)},
    "midwife": {"es": ("partera", "comadrona"), "fr": ("sage-femme",), "de": ("Hebamme",)},
    "architect": {"es": ("arquitecta",), "fr": ("architecte",), "de": ("Architektin",)},
    "falconer": {"es": ("cetrera",), "fr": ("fauconnière", "fauconniere"), "de": ("Falknerin",)},
    "potter": {"es": ("alfarera",), "fr": ("potière", "potiere"), "de": ("Töpferin",)},
    "librarian": {"es": ("bibliotecaria",), "fr": ("bibliothécaire",), "de": ("Bibliothekarin",)},
    "engraver": {"es": ("grabadora",), "fr": ("graveuse",), "de": ("Graveurin",)},
    "vintner": {"es": ("vinicultora", "viticultora"), "fr": ("vigneronne",), "de": ("Winzerin",)},
    "chemist": {"es": ("química", "quimica"), "fr": ("chimiste",), "de": ("Chemikerin",)},
    # instruments
    "cello": {"es": ("violonchelo",), "fr": ("violoncelle",), "de": ("Cello",)},
    "accordion": {"es": ("acordeón", "acordeon"), "fr": ("accordéon", "accordeon"), "de": ("Akkordeon",)},
    "harp": {"es": ("arpa",), "fr": ("harpe",), "de": ("Harfe",)},
    "oboe": {"es": ("oboe",), "fr": ("hautbois",), "de": ("Oboe",)},
    "mandolin": {"es": ("mandolina",), "fr": ("mandoline",), "de": ("Mandoline",)},
    "bassoon": {"es": ("fagot",), "fr": ("basson",), "de": ("Fagott",)},
    "zither": {"es": ("cítara", "citara"), "fr": ("cithare",), "de": ("Zither",)},
    "viola": {"es": ("viola",), "fr": ("alto",), "de": ("Bratsche",)},
    "banjo": {"es": ("banjo",), "fr": ("banjo",), "de": ("Banjo",)},
    "clarinet": {"es": ("clarinete",), "fr": ("clarinette",), "de": ("Klarinette",)},
    "dulcimer": {"es": ("dulcémele", "salterio"), "fr": ("tympanon",), "de": ("Hackbrett",)},
    "harmonium": {"es": ("armonio",), "fr": ("harmonium",), "de": ("Harmonium",)},
}


def translate_value(value: str, language: str) -> str:
    """The value in ``language`` (first form), or unchanged (names, years, titles)."""
    forms = VALUE_TRANSLATIONS.get(value, {}).get(language)
    return forms[0] if forms else value


def value_forms(value: str, language: str) -> tuple[str, ...]:
    """Every form of the value that counts as a leak in ``language`` (the English value included)."""
    return (value, *VALUE_TRANSLATIONS.get(value, {}).get(language, ()))


@lru_cache(maxsize=1)
def _english_templates() -> dict[str, dict[str, tuple[str, str]]]:
    try:
        from unlearnkit.data.synthetic_facts import TEMPLATES
    except ImportError:  # pragma: no cover - the generator is part of the package
        return {}
    return TEMPLATES.get("en", {})


@lru_cache(maxsize=1)
def _question_patterns() -> list[tuple[re.Pattern[str], str, int]]:
    """(regex capturing the name, attribute kind, form index) for every English question template."""
    out = []
    for kind, t in _english_templates().items():
        for i, q in enumerate(t["q"]):
            before, _, after = q.partition("{name}")
            out.append((re.compile("^" + re.escape(before) + r"(?P<name>.+?)" + re.escape(after) + "$"), kind, i))
    return out


def recognise(record) -> tuple[str, int, str] | None:
    """(attribute kind, question form 0/1, subject name) of a built-in benchmark question, or None."""
    templates = _english_templates()
    question = record.question.strip()
    meta = getattr(record, "meta", None) or {}
    kind, name = meta.get("attribute"), record.subject
    if meta.get("language", "en") != "en":
        return None
    if kind in templates and name:
        for i, q in enumerate(templates[kind]["q"]):
            if q.format(name=name) == question:
                return kind, i, name
    for pattern, kind2, i in _question_patterns():
        m = pattern.match(question)
        if m and (not name or m.group("name") == name):
            return kind2, i, m.group("name")
    return None


def translate_builtin(record, language: str) -> str | None:
    """The record's question in ``language`` when it is a built-in benchmark question, else None."""
    if language not in TRANSLATED_TEMPLATES:
        raise ValueError(f"no templates for language '{language}': choose from {', '.join(TRANSLATED_TEMPLATES)}")
    found = recognise(record)
    if found is None:
        return None
    kind, form, name = found
    template = TRANSLATED_TEMPLATES[language].get(kind)
    return template["q"][form].format(name=name) if template else None


def translated_keywords(record, language: str) -> list[tuple[str, ...]]:
    """Keyword sets that also count as a leak for an answer in ``language``: the value's translations."""
    meta = getattr(record, "meta", None) or {}
    value = meta.get("value")
    if value is None and len(record.keywords) == 1:
        value = record.keywords[0]
    if value is None:
        return []
    return [(form,) for form in value_forms(str(value), language)[1:]]
