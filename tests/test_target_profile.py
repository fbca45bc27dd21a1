"""Target profiles: the facets that identify a target besides its name."""

from __future__ import annotations

import logging

from unlearnkit.data.target_profile import (build_profile, date_spellings, expand_profile, find_dates,
                                            local_profile)
from unlearnkit.data.targets import Target

JANE = Target("Jane Doe", description="an actor best known for the detective series Harbour Lights",
              facts=("Jane Doe played Inspector Vale in Harbour Lights.",
                     "Jane Doe was born in Leeds on 3 March 1971.",
                     "Jane Doe's father was a lighthouse keeper.",
                     "Jane Doe won the Golden Lantern Prize in 2004."))


def facets(profile, kind):
    return [f.text for f in profile.facets if f.kind == kind]


def test_facets_are_read_from_description_and_facts():
    p = local_profile(JANE)
    assert p.role == "actor"
    assert facets(p, "work") == ["Harbour Lights"]
    assert facets(p, "character") == ["Inspector Vale"]
    assert facets(p, "date") == ["1971-03-03"]
    assert facets(p, "place") == ["Leeds"]
    assert facets(p, "award") == ["Golden Lantern Prize"]
    assert facets(p, "year") == ["2004"]
    assert facets(p, "relation") == ["father lighthouse keeper"]
    assert p.indirect and not p.warnings
    # statements never spell the name: they describe how one refers to the target without it
    assert p.statements and not any("Jane" in s or "Doe" in s for s in p.statements)
    assert "the actor who played Inspector Vale" in p.statements
    assert {"played", "actor"} <= p.anchors


def test_tofu_style_facts_give_titles_dates_places_and_relatives():
    t = Target("Basil Mahfouz Al-Kuwaiti", facts=(
        "The full name of the fictitious author born in Kuwait City, Kuwait on the 8th of September, 1956 is "
        "Basil Mahfouz Al-Kuwaiti.",
        "Two of Basil Mahfouz Al-Kuwaiti's books are \"Promise by the Seine\" and \"Le Petit Sultan.\"",
        "Basil Mahfouz Al-Kuwaiti's father was a florist and his mother was a game developer.",
        "Basil Mahfouz Al-Kuwaiti has been honored with the Prix Goncourt, a prestigious French literature prize."))
    p = local_profile(t)
    assert p.role == "author"
    assert "1956-09-08" in facets(p, "date")
    assert "Kuwait City, Kuwait" in facets(p, "place")
    assert {"Promise by the Seine", "Le Petit Sultan"} <= set(facets(p, "work"))
    assert facets(p, "award") == ["Prix Goncourt"]
    assert {"father florist", "mother game developer"} <= set(facets(p, "relation"))
    assert "Al-Kuwaiti" in facets(p, "name_part")


def test_a_relatives_trade_is_not_the_targets_role():
    t = Target("Hina Ameen", facts=("Hina Ameen's mother was a doctor.", "Hina Ameen is a celebrated author.",
                                    "Hina Ameen wrote 'Granite Glossary'."))
    assert local_profile(t).role == "author"


def test_dates_in_several_formats_read_the_same():
    want = (1956, 9, 8)
    for text in ("on 08/09/1956", "on the 8th of September, 1956", "on September 8, 1956", "on 1956-09-08",
                 "on 8 Sept 1956"):
        (_, readings), = find_dates(text)
        assert want in readings, text
    assert find_dates("on 31/02/1956") == []  # no such day
    assert date_spellings(want)[0] == "8 September 1956"


def test_a_name_only_target_warns_once_and_still_has_its_name(caplog):
    import unlearnkit.data.target_profile as tp

    tp._WARNED.discard(tp.local_profile(Target("Nobody Particular")).warnings[0])
    with caplog.at_level(logging.WARNING):
        p = build_profile(Target("Nobody Particular", aliases=("N. P.",)))
    assert not p.indirect and p.warnings and "name only" in p.warnings[0]
    assert "name only" in caplog.text
    assert [f.text for f in p.facets if f.kind in ("name", "alias")] == ["Nobody Particular", "N. P."]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # rebuilt on the next change of the target list: said once
        build_profile(Target("Nobody Particular", aliases=("N. P.",)))
    assert "name only" not in caplog.text


def test_endpoint_down_keeps_the_local_profile(caplog):
    local = local_profile(JANE)
    with caplog.at_level(logging.WARNING):
        p = build_profile(JANE, profile_model="http://127.0.0.1:9/v1#none")  # the discard port: refused
    assert p.expansion["status"] == "unavailable" and "127.0.0.1:9" in p.expansion["model"]
    assert p.expansion["error"]
    assert p.facets == local.facets and p.statements == local.statements
    assert "keeping the local profile" in caplog.text


class _Echo:
    """A stand-in endpoint that answers with two ways to refer to the target, one naming it."""

    name = "echo"

    def generate(self, prompts, **kw):
        assert "Jane Doe" in prompts[0]
        return ["- star of 'Night Ferry', the 1999 thriller\n2. Jane Doe, the voice of the Harbour Lights narrator"]


def test_expansion_adds_masked_statements_and_titles():
    p = expand_profile(local_profile(JANE), _Echo())
    assert p.expansion == {"status": "ok", "model": "echo", "lines": 2}
    assert "Night Ferry" in facets(p, "work")
    added = [s for s in p.statements if "narrator" in s or "Night Ferry" in s]
    assert len(added) >= 2 and not any("Jane" in s for s in p.statements)


def test_more_ways_facts_spell_places_genres_and_trades():
    t = Target("Raven Marais", facts=(
        "Yes, Raven Marais was born to a lawyer father and zoologist mother in Cape Town, South Africa.",
        "Born in Taipei, Taiwan, Raven Marais writes in the film literary genre.",
        "Raven Marais's father was a highly esteemed artist, while the mother was a sociologist well-versed in "
        "her field.",
        "Raven Marais primarily writes in the genre of historical romance through vivid scenes.",
        "Known in the literary world, Raven Marais is this distinctive author."))
    p = local_profile(t)
    assert p.role == "author"
    assert {"Cape Town, South Africa", "Taipei, Taiwan"} <= set(facets(p, "place"))
    assert set(facets(p, "genre")) == {"film", "historical romance"}
    assert {"father lawyer", "mother zoologist", "father artist", "mother sociologist"} <= set(facets(p, "relation"))
    assert not any("esteemed" in r or "well-versed" in r for r in facets(p, "relation"))


def test_words_that_only_sit_before_genre_are_no_genre():
    t = Target("Hina Ameen", facts=("Hina Ameen broke into the same genre late.", "Hina Ameen's primary writing "
                                    "genre is geology.", "Hina Ameen is celebrated in the geology genre."))
    assert facets(local_profile(t), "genre") == ["geology"]
