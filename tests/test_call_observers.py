"""``LanguageModel.observe_calls``: every model's generate/score calls are observed without its help."""

from __future__ import annotations

from unlearnkit.models.base import LanguageModel
from unlearnkit.models.call_counting import count_calls


class Echo(LanguageModel):
    name = "echo"

    def score(self, prompts, answers, **kw):
        return [len(a) for a in answers]

    def generate(self, prompts, **kw):
        return [f"echo {p}" for p in prompts]


class LoudEcho(Echo):
    """Overrides generate and runs the parent's through super(): still one call for an observer."""

    def generate(self, prompts, **kw):
        return [t.upper() for t in super().generate(prompts, **kw)]


def test_observers_see_each_call_once_and_leave_no_trace():
    lm = LoudEcho()
    seen = []
    with lm.observe_calls(seen.append):
        assert lm.generate(["a", "b"], chat=False) == ["ECHO A", "ECHO B"]
        lm.score(["q"], ["four"])
    lm.generate(["after"])  # the block is closed: not observed
    assert [(c.kind, list(c.prompts), c.chat) for c in seen] == [("generate", ["a", "b"], False),
                                                                  ("score", ["q"], True)]
    assert list(seen[0].outputs) == ["ECHO A", "ECHO B"] and list(seen[1].answers) == ["four"]
    assert "_call_observers" not in vars(lm) and "generate" not in vars(lm)


def test_count_calls_counts_prompt_answer_and_output_tokens():
    lm = Echo()
    with count_calls(lm) as c:
        lm.generate(["abcd"], chat=False)  # prompt 1 token (4 characters), output "echo abcd" 3 tokens
        lm.score(["abcdefgh", "x"], ["abcd", "yz"], chat=False)  # 2 + 1 prompt tokens, 1 + 1 answer tokens
    assert c.calls == 3
    assert c.prompt_tokens == 1 + (2 + 1) + (1 + 1) and c.output_tokens == 3
    assert c.tokens == c.prompt_tokens + c.output_tokens
