"""English sentences for the built-in corpus, written for this project (no copyrighted text).

A small hand-written set plus sentences generated from a fixed grammar, so that the list is long, varied
in length and identical on every machine.

>>> s = sentences()
>>> len(s) >= 300, len(set(s)) == len(s), s == sentences()
(True, True, True)
"""

from __future__ import annotations

import numpy as np

WRITTEN = (
    "The morning train was late again, so we walked to the old bridge instead.",
    "Please put the blue folder on the second shelf next to the lamp.",
    "My brother fixed the kitchen radio with a paper clip and some tape.",
    "We should plant the tomatoes before the first warm week of spring.",
    "The library closes early on Fridays, but the garden stays open.",
    "Could you tell me how far it is to the nearest pharmacy?",
    "Seven small boats drifted slowly past the harbour wall.",
    "I forgot my umbrella, and of course it started to rain.",
    "The children counted the stars until they fell asleep.",
    "A cold wind came down from the hills just after sunset.",
    "Her grandmother kept every letter in a wooden box under the bed.",
    "The new bakery on the corner sells bread that is still warm at noon.",
    "Turn left at the fountain and follow the river for ten minutes.",
    "Nobody noticed that the clock in the hall had stopped at midnight.",
    "The meeting was moved to Thursday because the room was flooded.",
    "He painted the fence green, which surprised all of the neighbours.",
    "Fresh coffee and a quiet table are all I need this afternoon.",
    "The museum guide spoke about ships, maps and forgotten islands.",
    "If the bus does not come soon, we will take a taxi.",
    "She whistled a simple tune while she repaired the bicycle chain.",
    "Our team finished the puzzle just before the lights went out.",
    "The recipe asks for two eggs, a cup of flour and a pinch of salt.",
    "Every winter the lake freezes and the village holds a skating race.",
    "I have never seen so many birds sitting on one telephone wire.",
    "The letter arrived three weeks late, with a foreign stamp on it.",
    "Remember to close the window before you leave the office.",
    "A tall man in a grey coat asked for directions to the station.",
    "The soup tasted better on the second day, as soup often does.",
    "They built a small cabin near the edge of the pine forest.",
    "Music from the open window filled the narrow street below.",
)

SUBJECTS = (
    "the old farmer", "my neighbour", "a young doctor", "the quiet student", "our teacher", "the baker",
    "a tired pilot", "the night nurse", "my cousin", "the new manager", "a careful driver", "the painter",
    "the local mayor", "a friendly stranger", "the football coach", "my aunt", "the ship captain",
    "a busy lawyer", "the museum guard", "the shop owner",
)  # fmt: skip
VERBS = (
    "carried", "found", "repaired", "painted", "sold", "borrowed", "described", "cleaned", "delivered",
    "measured", "packed", "ordered", "opened", "returned", "photographed", "moved", "wrapped", "counted",
)  # fmt: skip
OBJECTS = (
    "a heavy wooden chair", "the broken window", "three bags of apples", "an old brass key",
    "the yellow umbrella", "a long letter", "the kitchen table", "two large boxes", "a map of the coast",
    "the silver bicycle", "a basket of bread", "the garden gate", "a small red kite", "the winter coats",
    "a jar of honey", "the paper lanterns",
)  # fmt: skip
PLACES = (
    "near the station", "behind the church", "at the market", "in the empty hall", "by the river",
    "on the top floor", "outside the school", "under the bridge", "in the village square",
    "at the end of the road", "beside the harbour", "in the back garden",
)  # fmt: skip
TIMES = (
    "yesterday morning", "last summer", "before lunch", "after the storm", "on Sunday evening",
    "late at night", "early this week", "during the holiday", "at half past four", "every Tuesday",
)  # fmt: skip
TAILS = (
    "", "", "", " because nobody else would", " and then went home", " while it was still raining",
    " without saying a word", " for the second time", " as everyone watched",
)  # fmt: skip


def sentences(n: int = 400, seed: int = 0) -> list[str]:
    """The project's sentences: the hand-written ones, then generated ones, ``n`` in all, no duplicates.

    Args:
        n: how many sentences.
        seed: generator seed for the grammar (the default gives the corpus's fixed list).
    """
    rng = np.random.default_rng(seed)
    out = list(WRITTEN[:n])
    seen = set(out)
    while len(out) < n:
        s, v, o = (x[rng.integers(len(x))] for x in (SUBJECTS, VERBS, OBJECTS))
        p, t, tail = (x[rng.integers(len(x))] for x in (PLACES, TIMES, TAILS))
        # Two word orders keep the prosody from being identical sentence to sentence.
        words = (
            f"{s} {v} {o} {p} {t}{tail}" if rng.random() < 0.5 else f"{t.capitalize()}, {s} {v} {o} {p}{tail}"
        )
        sentence = words[0].upper() + words[1:] + "."
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out
