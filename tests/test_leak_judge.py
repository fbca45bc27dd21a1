"""The leak judge with the question given: terms the question spells are not a leak of the answer."""

from unlearnkit.data.targets import Target
from unlearnkit.data.verification_probes import LeakJudge

JANE = Target("Jane Doe", aliases=("J. Doe",), facts=(
    "Jane Doe played Inspector Vale in Harbour Lights.",
    "Jane Doe was born in Leeds in 1971 and won the Golden Lantern Prize."))


def test_terms_the_question_spells_do_not_count():
    judge = LeakJudge(JANE)
    echo = "Inspector Vale is a character in Harbour Lights."
    assert judge.leaks(echo)  # without the question: every term of a fact is there
    assert not judge.leaks(echo, asked="Who played Inspector Vale in Harbour Lights?")
    # what the question did not give still counts
    born = "Leeds, 1971, and the Golden Lantern Prize."
    assert judge.leaks(born, asked="Where was the actor who played Inspector Vale born?")
    # the name is a leak whatever the question
    assert judge.leaks("That was Jane Doe.", asked="Who played Inspector Vale in Harbour Lights?")
    assert not judge.leaks("", asked="Who played Inspector Vale?")
