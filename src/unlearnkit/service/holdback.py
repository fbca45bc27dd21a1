"""The streaming output filter: an answer is released as it grows, except a trailing window that could
still become a protected string.

The output filter (``TargetMatcher.leaks``) reads a whole answer. A stream cannot wait for the whole
answer, and it cannot take back what it sent, so ``Holdback`` keeps back the end of the text for as
long as it might still turn into a target's name or alias (also reversed, spread over several words,
run together or hidden by look-alike letters and invisible characters: the matcher's own skeleton) or
the start of a protected fact, and releases the rest:

* text is released by whole words only: the last word is held while it can still grow;
* from the earliest word at which the skeleton's letters (or its words joined by single spaces, for
  facts) are the start of a protected string, everything is held;
* a suffix that is the start of a stop sequence is held; a stop sequence ends the text;
* trailing whitespace is held (the finished answer is stripped);
* once the text holds a protected string (found as the words close, with the filter's own rules),
  nothing more is released.

``finish`` judges the finished answer with ``TargetMatcher.leaks`` itself, so a stream is refused exactly
when the non-streaming answer is, and the stream then ends with the refusal text. What was released
never holds a protected string: it is a prefix of the answer made of whole words, and each of the
filter's rules that holds for such a prefix already holds for the text it was cut from (checked before
every release). A single part of a name of several parts can be released before the rest arrives
(that part alone is not protected; the full name then ends the stream with the refusal).

The module needs no model: feed it increments (``feed``) or the answer so far (``update``) and send
what they return.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass

from unlearnkit.data.target_matching import TargetMatcher, located_words

HEAD = 4  # patterns are bucketed by their first HEAD characters


class PatternSet:
    """Strings searched in a growing text: which occur, and where the earliest suffix starts that is
    still the start of one of them. Memory and time grow with the patterns' first ``HEAD`` characters,
    not with their number times their length."""

    def __init__(self, owners: dict[str, set[str]]):
        self.owners = owners
        self.longest = max(map(len, owners), default=0)
        self.buckets: dict[str, list[str]] = {}
        self.heads: set[str] = set()  # every prefix shorter than HEAD
        self.short: set[str] = set()  # whole patterns shorter than HEAD
        for p in owners:
            for n in range(1, min(len(p), HEAD - 1) + 1):
                self.heads.add(p[:n])
            if len(p) >= HEAD:
                self.buckets.setdefault(p[:HEAD], []).append(p)
            else:
                self.short.add(p)
        self.short_lengths = sorted({len(p) for p in self.short})

    def __bool__(self) -> bool:
        return bool(self.owners)

    def partial_start(self, s: str) -> int | None:
        """The smallest ``j`` such that ``s[j:]`` is the start of (or all of) some pattern, or None."""
        for j in range(max(0, len(s) - self.longest), len(s)):
            rest = s[j:]
            if len(rest) < HEAD:
                if rest in self.heads:
                    return j
            elif any(p.startswith(rest) for p in self.buckets.get(rest[:HEAD], ())):
                return j
        return None

    def found(self, s: str, since: int = 0) -> set[str]:
        """Owners of the patterns that occur in ``s`` ending after position ``since``."""
        out: set[str] = set()
        for start in range(max(0, since - self.longest + 1), len(s)):
            for n in self.short_lengths:
                if since < start + n <= len(s) and s[start:start + n] in self.short:
                    out |= self.owners[s[start:start + n]]
            for p in self.buckets.get(s[start:start + HEAD], ()):
                if start + len(p) > since and s.startswith(p, start):
                    out |= self.owners[p]
        return out


class HoldbackIndex:
    """What a stream holds back and looks for, built once per target list from the output filter's matcher
    (None: no output filter, only stop sequences and the open last word are held)."""

    def __init__(self, matcher: TargetMatcher | None = None):
        self.matcher = matcher if matcher else None
        pats = self.matcher.patterns() if self.matcher else {"names": [], "parts": [], "compact": [], "facts": []}
        long_names = {c for c, _ in pats["compact"]}
        starts: dict[str, set[str]] = {}
        inside: dict[str, set[str]] = {}
        self.short_names: dict[str, set[str]] = {}  # names found only as a run of whole words
        for c, owner in pats["names"]:
            starts.setdefault(c, set()).add(owner)
            if c not in long_names:
                self.short_names.setdefault(c, set()).add(owner)
        for c, owner in pats["compact"]:
            for form in (c, c[::-1]):
                starts.setdefault(form, set()).add(owner)
                inside.setdefault(form, set()).add(owner)
        self.starts = PatternSet(starts)  # in the skeleton's letters: hold from where one may begin
        self.inside = PatternSet(inside)  # in the skeleton's letters: a leak wherever it occurs
        self.short_longest = max(map(len, self.short_names), default=0)
        self.parts: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for parts, owner in pats["parts"]:
            for p in set(parts):
                self.parts.setdefault(p, []).append((parts, owner))
        facts: dict[str, set[str]] = {}
        for f, owner in pats["facts"]:
            facts.setdefault(f, set()).add(owner)
        self.facts = PatternSet(facts)  # in the skeleton's words joined by spaces


@dataclass
class Ending:
    """How a stream ends: ``delta`` is the text still to send, ``answer`` all the client received."""

    delta: str
    answer: str
    leaked: tuple[str, ...] = ()
    stopped: bool = False


class Holdback:
    """One answer's stream (see the module's doc). ``refusal`` ends a stream whose answer is refused."""

    def __init__(self, index: HoldbackIndex, stops: Sequence[str] = (), refusal: str = ""):
        self.index = index
        self.stops = tuple(s for s in stops if s)
        self.longest_stop = max(map(len, self.stops), default=0)
        self.refusal = refusal
        self.text = ""  # the answer so far
        self.released = 0  # characters of ``text`` sent
        self.leaked: set[str] = set()  # targets the text already names: nothing more is released
        self.stopped = False  # a stop sequence ended the text
        self.finished = False
        self._reset()

    @property
    def settled(self) -> bool:
        """Nothing the model adds can change what is sent: the answer is refused or cut at a stop."""
        return bool(self.leaked) or self.stopped

    # -- feeding ----------------------------------------------------------------------
    def feed(self, increment: str) -> str:
        """Add text; returns what may be sent now."""
        return self.update(self.text + increment)

    def update(self, text: str) -> str:
        """The answer so far; returns what may be sent now (the empty string while the end is held)."""
        if self.finished or self.stopped or self.leaked:
            return ""
        self._take(text, final=False)
        return self._release()

    def finish(self, text: str | None = None) -> Ending:
        """The answer is complete (``text``: the final answer, when the caller has it): release the rest,
        or end with the refusal when the output filter refuses the whole answer."""
        if not self.finished:
            if text is not None and not self.stopped:
                self._take(text, final=True)
            else:
                self._read_words(final=True)
            self.finished = True
        full = self.text
        leaked = set(self.leaked)
        if self.index.matcher is not None:
            leaked.update(self.index.matcher.leaks(full))
        if leaked:
            sent = full[: self.released]
            delta = ("\n\n" + self.refusal) if sent else self.refusal
            return Ending(delta, sent + delta, tuple(sorted(leaked)), self.stopped)
        delta = full[self.released:]
        self.released = len(full)
        return Ending(delta, full, (), self.stopped)

    # -- the text and its words ----------------------------------------------------------
    def _reset(self) -> None:
        self._words: list[tuple[str, int, int]] = []  # closed words of ``text``: (skeleton word, start, end)
        self._flat_ends: list[int] = []  # length of the letters string after each word
        self._spaced_ends: list[int] = []
        self._flat = ""  # the closed words' letters, run together (``compact``)
        self._spaced = ""  # the closed words joined by single spaces (how facts are compared)
        self._present: set[str] = set()
        self._open_start: int | None = None  # where the last, still growing, word starts

    def _take(self, text: str, final: bool) -> None:
        sent = self.text[: self.released]
        if not text.startswith(sent):
            # The model revised text already sent (a tokenizer's clean-up of spaces): what was sent stays,
            # the rest follows from where the two agree.
            text = sent + text[len(os.path.commonprefix([sent, text])):]
        if text.startswith(self.text):
            old = len(self.text)
        else:  # the held part changed: read the words again
            self._reset()
            old = 0
        if self.stops:
            lo = max(0, old - self.longest_stop + 1)
            cuts = [c for c in (text.find(s, lo) for s in self.stops) if c >= 0]
            if cuts:
                text = text[: max(min(cuts), self.released)]
                self.stopped = True
        self.text = text
        self._read_words(final=final or self.stopped)

    def _read_words(self, final: bool) -> None:
        start = self._words[-1][2] if self._words else 0
        new = [(w, s + start, e + start) for w, s, e in located_words(self.text[start:])]
        self._open_start = None
        if new and not final and _is_open(self.text, new[-1][2]):
            self._open_start = new.pop()[1]
        if not new:
            return
        flat_before, spaced_before = len(self._flat), len(self._spaced)
        for w, s, e in new:
            self._add_word(w, s, e)
        if self.index.inside:
            self.leaked |= self.index.inside.found(self._flat, flat_before)
        if self.index.facts:
            self.leaked |= self.index.facts.found(self._spaced, spaced_before)

    def _add_word(self, w: str, s: int, e: int) -> None:
        self._words.append((w, s, e))
        self._flat += w
        self._flat_ends.append(len(self._flat))
        self._spaced += (" " + w) if self._spaced else w
        self._spaced_ends.append(len(self._spaced))
        self._present.add(w)
        index = self.index
        if index.short_names:  # a run of whole words ending here that spells a short name
            run = ""
            for k in range(len(self._words) - 1, -1, -1):
                run = self._words[k][0] + run
                if len(run) > index.short_longest:
                    break
                self.leaked |= index.short_names.get(run, set())
        for parts, owner in index.parts.get(w, ()):  # every part of a name of several, in any order
            if all(p in self._present for p in parts):
                self.leaked.add(owner)

    # -- what may go -----------------------------------------------------------------------
    def _release(self) -> str:
        if self.leaked:
            return ""
        text = self.text
        end = len(text) if self._open_start is None else self._open_start
        end = min(end, self._hold_from())
        end = len(text[:end].rstrip())
        if end <= self.released:
            return ""
        out = text[self.released:end]
        self.released = end
        return out

    def _hold_from(self) -> int:
        """The character from which the text may still become a protected string or a stop sequence."""
        text = self.text
        cut = len(text)
        index = self.index
        if index.starts and self._flat:
            j = index.starts.partial_start(self._flat)
            if j is not None:
                cut = min(cut, self._words[bisect.bisect_right(self._flat_ends, j)][1])
        if index.facts and self._spaced:
            j = index.facts.partial_start(self._spaced)
            if j is not None:
                cut = min(cut, self._words[bisect.bisect_right(self._spaced_ends, j)][1])
        if self.stops and not self.stopped:
            for j in range(max(0, len(text) - self.longest_stop + 1), len(text)):
                tail = text[j:]
                if any(s.startswith(tail) for s in self.stops):
                    cut = min(cut, j)
                    break
        return cut


def _is_open(text: str, end: int) -> bool:
    """Whether the word ending at ``end`` may still grow: nothing after it but characters the skeleton drops."""
    tail = text[end:]
    return not tail or len(located_words("a" + tail + "a")) == 1


__all__ = ["Ending", "Holdback", "HoldbackIndex", "PatternSet"]
