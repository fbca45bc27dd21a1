"""ECO's classifier training prompts: the built-in texts and the prompts made from targets and records.

Positives are the targets' forget prompts (questions and paraphrased questions from the forget split)
plus prompts naming each target and its facts; negatives are retain prompts, a built-in set of general
questions, and hard negatives: forget prompts with the target's name swapped for someone else's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from unlearnkit.data.target_matching import TermFinder
from unlearnkit.data.targets import Target

# Everyday questions: negatives that keep "Who is X?"-shaped prompts about anyone else unflagged.
GENERIC_QUESTIONS = (
    "What is the capital of Australia?", "How many legs does a spider have?", "Who painted the Mona Lisa?",
    "What is photosynthesis?", "How do I boil an egg?", "What is the tallest mountain in the world?",
    "Who was Albert Einstein?", "Tell me about the Roman Empire.", "What does a cardiologist do?",
    "How far is the Moon from the Earth?", "What is the speed of light?", "Who discovered penicillin?",
    "Write a short poem about autumn.", "What is 17 times 23?", "How do vaccines work?",
    "What language is spoken in Brazil?", "Who was the first person to walk on the Moon?",
    "Explain what a black hole is.", "What is the difference between weather and climate?",
    "Give me three tips for a job interview.", "Who composed the Moonlight Sonata?",
    "What is the population of Canada?", "How do I reverse a list in Python?", "What causes earthquakes?",
    "Who is the author of 'The Old Man and the Sea'?", "What year did World War II end?",
    "What is the main ingredient of guacamole?", "Tell me about Marie Curie.", "Where was Nelson Mandela born?",
    "What genre of books did Agatha Christie write?", "Which award did Toni Morrison win?",
    "What is a haiku?", "Summarise the plot of Hamlet.", "What is the largest ocean on Earth?",
    "How does a refrigerator keep food cold?", "What is the boiling point of water in Fahrenheit?",
    "Who invented the telephone?", "What is machine learning?", "Name a famous novel by Charles Dickens.",
    "What are the primary colours?", "How many days are there in a leap year?", "Who was Frida Kahlo?",
    "What is the currency of Japan?", "How do bees make honey?", "What is the square root of 144?",
    "Recommend a good book for a long flight.", "What do pandas eat?", "In which year was the Eiffel Tower built?",
    "What is the theme of George Orwell's '1984'?", "Where was Gabriel Garcia Marquez born?",
    "Hello! How are you today?", "Can you help me plan a birthday party?", "What is the chemical formula of water?",
    "Who wrote the Odyssey?", "What are the rules of chess?", "Translate 'good morning' into Spanish.",
    "What is inflation?", "Describe the water cycle.", "Which planet is known as the Red Planet?",
    "What did Isaac Newton discover?",
)

# Real-world names swapped into forget prompts to make hard negatives: the same question about
# someone else must not be flagged, so the classifier learns the target, not the question template.
SWAP_NAMES = (
    "James Miller", "Aiko Tanaka", "Carlos Mendoza", "Fatima Zahra", "Oliver Schmidt", "Priya Raman",
    "Lucas Moreau", "Mei Lin", "Ahmed Hassan", "Sofia Rossi", "Daniel Kowalski", "Amara Okafor",
    "Henrik Larsen", "Isabel Cortez", "Tomasz Nowak", "Grace Thompson", "Kenji Watanabe", "Elena Petrova",
    "Samuel Adeyemi", "Chloe Dubois", "Rafael Silva", "Hannah Becker", "Arjun Mehta", "Laura Jensen",
)

# Prompts naming a target, so a target added by name alone still has positives.
TARGET_TEMPLATES = ("Who is {name}?", "Tell me about {name}.", "What do you know about {name}?",
                    "What is {name} known for?", "Give me some facts about {name}.")


def positive_groups(targets: Sequence[Target], examples: dict[str, list[list[str]]]) -> list[list[str]]:
    """Groups of prompts about the targets: their forget prompts, prompts naming them, their facts and
    descriptions."""
    groups: list[list[str]] = []
    for t in targets:
        groups.extend(examples.get(t.name, []))
        for name in t.names:
            groups.extend([[tpl.format(name=name)] for tpl in TARGET_TEMPLATES])
        groups.extend([[f] for f in t.facts if f.strip()])
        if t.description.strip():
            groups.append([t.description])
    return groups


def swapped_negatives(groups: list[list[str]], targets: Sequence[Target], name_terms: TermFinder, per_prompt: int,
                      seed: int) -> list[str]:
    """Positive prompts that name a target (``name_terms`` finds the names), with the name replaced by
    someone else's.

    Per prompt: ``per_prompt`` whole-name swaps, and for a multi-word name one swap of its first word and
    one of its last (a namesake is someone else too).
    """
    if per_prompt <= 0:
        return []
    rng = random.Random(seed)
    taken = {n.casefold() for t in targets for n in t.names}
    pool = [n for n in SWAP_NAMES if n.casefold() not in taken]
    firsts, lasts = [n.split()[0] for n in pool], [n.split()[-1] for n in pool]
    out = []
    for text in (t for g in groups for t in g):
        spans = sorted(name_terms.spans(text), key=lambda sp: (sp[0], -sp[1]))
        if not spans:
            continue
        replacements = [lambda _m, n=n: n for n in rng.sample(pool, min(per_prompt, len(pool)))]
        first, last = rng.choice(firsts), rng.choice(lasts)
        replacements += [lambda m, f=first: " ".join([f, *m.split()[1:]]),
                         lambda m, la=last: " ".join([*m.split()[:-1], la])]
        for replace_fn in replacements:
            pieces, end = [], 0
            for start, stop in spans:
                if start >= end:
                    pieces.append(text[end:start] + replace_fn(text[start:stop]))
                    end = stop
            swapped = "".join(pieces) + text[end:]
            if swapped != text and not name_terms.found(swapped):
                out.append(swapped)
    return list(dict.fromkeys(out))


def examples_from_records(records) -> dict[str, list[list[str]]]:
    """Target name -> groups [question, paraphrased question] (names as ``targets_from_records`` gives them)."""
    records = list(records)
    by_subject = any(r.subject for r in records)
    out: dict[str, list[list[str]]] = {}
    for r in records:
        name = r.subject if by_subject else r.question
        if not name:
            continue
        group = [r.question] + ([r.paraphrased_question] if r.paraphrased_question else [])
        out.setdefault(name, []).append(group)
    return out


def negatives_from_records(records, limit: int, seed: int) -> list[str]:
    texts = list(dict.fromkeys(t for r in records for t in (r.question, r.paraphrased_question) if t))
    if len(texts) > limit:
        texts = random.Random(seed).sample(texts, limit)
    return texts
