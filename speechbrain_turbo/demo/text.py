"""The demo corpus' sentences: neutral ones from templates filled with word
pools, emotional ones from per-emotion lexicons, and the pool of script
lines that script dialogs share across sessions. The material itself is
data, ``text_material.json``.

Authors
 * speechbrain-turbo contributors
"""

import json
import re
from importlib import resources

from speechbrain_turbo.demo.settings import (
    EMOTIONAL_TEXT_PROB,
    LEXICON_MATCH_PROB,
    SCRIPT_POOL_SIZE,
)

# The word pools, templates and emotion lexicons (text_material.json).
MATERIAL = json.loads(
    resources.files("speechbrain_turbo.demo")
    .joinpath("text_material.json")
    .read_text(encoding="utf-8")
)
NAMES = tuple(MATERIAL["names"])
OBJECTS = tuple(MATERIAL["objects"])
PLACES = tuple(MATERIAL["places"])
# Time phrases: any tense, past only, future only.
TIMES = tuple(MATERIAL["times"])
PAST_TIMES = tuple(MATERIAL["past_times"])
FUTURE_TIMES = tuple(MATERIAL["future_times"])
VERBS = tuple(MATERIAL["verbs"])
ERRANDS = tuple(MATERIAL["errands"])
STOPS = tuple(MATERIAL["stops"])
NUMBERS = tuple(MATERIAL["numbers"])
BAD_DEEDS = tuple(MATERIAL["bad_deeds"])
# Spoken openers shared by all emotions, so that they carry no cue.
OPENERS = tuple(MATERIAL["openers"])
NEUTRAL_TEMPLATES = tuple(MATERIAL["neutral_templates"])
# Emotion-bearing phrases. hap and exc overlap in spirit (IEMOCAP merges
# them); "I can't believe" appears under both ang and exc on purpose.
LEXICONS = {k: tuple(v) for k, v in MATERIAL["lexicons"].items()}


def _pick(rng, items):
    """Draws one item of a sequence.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    items : sequence
        Items to draw from.

    Returns
    -------
    object
        One of ``items``.

    Example
    -------
    >>> import numpy as np
    >>> _pick(np.random.default_rng(0), ["a"])
    'a'
    """
    return items[int(rng.integers(len(items)))]


def _fill(template, rng):
    """Fills the ``{slots}`` of a template from the word pools.

    Arguments
    ---------
    template : str
        Text with slots among name, obj, place, time, past_time,
        future_time, verb, past, errand, stop, number, bad.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    str
        The filled text.

    Example
    -------
    >>> import numpy as np
    >>> text = _fill("Is {obj} still {place}?", np.random.default_rng(0))
    >>> text.startswith("Is the ") and text.endswith("?")
    True
    """
    verb, past = _pick(rng, VERBS)
    return template.format(
        name=_pick(rng, NAMES),
        obj=_pick(rng, OBJECTS),
        place=_pick(rng, PLACES),
        time=_pick(rng, TIMES),
        past_time=_pick(rng, PAST_TIMES),
        future_time=_pick(rng, FUTURE_TIMES),
        verb=verb,
        past=past,
        errand=_pick(rng, ERRANDS),
        stop=_pick(rng, STOPS),
        number=_pick(rng, NUMBERS),
        bad=_pick(rng, BAD_DEEDS),
    )


def _capitalize(text):
    """Upper-cases the first letter only.

    Arguments
    ---------
    text : str
        A sentence.

    Returns
    -------
    str
        The sentence with its first character upper-cased.

    Example
    -------
    >>> _capitalize("the bus leaves at noon.")
    'The bus leaves at noon.'
    """
    return text[:1].upper() + text[1:]


def _decapitalize(text):
    """Lower-cases the first letter unless it starts "I" or a name.

    Arguments
    ---------
    text : str
        A sentence.

    Returns
    -------
    str
        The sentence, ready to follow a comma.

    Example
    -------
    >>> _decapitalize("The map is upstairs.")
    'the map is upstairs.'
    >>> _decapitalize("I'll call Anna.")
    "I'll call Anna."
    """
    first = re.split(r"[ ,'?]", text, maxsplit=1)[0]
    if first == "I" or first in NAMES:
        return text
    return text[:1].lower() + text[1:]


def _with_opener(text, rng):
    """Sometimes prefixes a spoken opener ("Well, ", "Look, ", ...).

    Arguments
    ---------
    text : str
        A capitalised sentence.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    str
        The sentence, with or without an opener.

    Example
    -------
    >>> import numpy as np
    >>> texts = {_with_opener("The map.", np.random.default_rng(i))
    ...          for i in range(50)}
    >>> "The map." in texts and "Well, the map." in texts
    True
    """
    opener = _pick(rng, OPENERS)
    return opener + _decapitalize(text) if opener else text


def neutral_sentence(rng):
    """Draws an emotionally neutral sentence.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    str
        One sentence, e.g. "Did you check the tickets on Friday?".

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> len({neutral_sentence(rng) for _ in range(200)}) > 150
    True
    """
    return _with_opener(
        _capitalize(_fill(_pick(rng, NEUTRAL_TEMPLATES), rng)), rng
    )


def emotional_sentence(lexicon, rng):
    """Draws a sentence carrying words of one emotion lexicon.

    An emotion phrase alone, or combined with neutral sentence material.

    Arguments
    ---------
    lexicon : str
        Key of ``LEXICONS`` (ang, sad, hap, exc, fru, sur).
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    str
        One sentence.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> texts = {emotional_sentence("ang", rng) for _ in range(200)}
    >>> len(texts) > 100
    True
    """
    phrase = _fill(_pick(rng, LEXICONS[lexicon]), rng)
    end = "!" if rng.random() < 0.4 else "."
    form = int(rng.integers(3))
    if form == 0:
        text = _capitalize(phrase) + end
    elif form == 1:
        neutral = _fill(_pick(rng, NEUTRAL_TEMPLATES), rng)
        text = _capitalize(phrase) + ", " + _decapitalize(neutral)
    else:
        neutral = _fill(_pick(rng, NEUTRAL_TEMPLATES), rng)
        text = _capitalize(neutral) + " " + _capitalize(phrase) + end
    return _with_opener(text, rng)


def choose_lexicon(emotion, rng):
    """Decides which emotion's words, if any, an utterance carries.

    Arguments
    ---------
    emotion : str
        The utterance's emotion code.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    str or None
        A key of ``LEXICONS``, or None for an emotionally neutral text.

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> picks = [choose_lexicon("sad", rng) for _ in range(1000)]
    >>> 0.4 < picks.count("sad") / 1000 < 0.6
    True
    """
    if rng.random() >= EMOTIONAL_TEXT_PROB[emotion]:
        return None
    if emotion in LEXICONS and rng.random() < LEXICON_MATCH_PROB:
        return emotion
    # Mismatched cue: words of one of the four-class emotions.
    others = [e for e in ("ang", "sad", "hap", "exc") if e != emotion]
    return _pick(rng, others)


def script_pool(rng, size=SCRIPT_POOL_SIZE):
    """Builds the script lines shared by all sessions' script dialogs.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    size : int
        Number of lines.

    Returns
    -------
    dict
        ``{lexicon or None: [line, ...]}``; None holds the neutral lines
        (about 40%), every lexicon at least two lines.

    Example
    -------
    >>> import numpy as np
    >>> pool = script_pool(np.random.default_rng(0), size=40)
    >>> sum(len(lines) for lines in pool.values())
    40
    >>> all(len(pool[key]) >= 2 for key in LEXICONS)
    True
    """
    keys = list(LEXICONS)
    num_neutral = max(1, int(round(0.4 * size)))
    per_key = max(2, (size - num_neutral) // len(keys))
    num_neutral = max(1, size - per_key * len(keys))
    pool = {None: _distinct(lambda: neutral_sentence(rng), num_neutral)}
    for key in keys:
        pool[key] = _distinct(lambda k=key: emotional_sentence(k, rng), per_key)
    return pool


def _distinct(draw, count):
    """Calls ``draw`` until it returned ``count`` distinct values.

    Arguments
    ---------
    draw : callable
        Returns one value per call.
    count : int
        Number of distinct values wanted.

    Returns
    -------
    list
        Distinct values, in order of first appearance.

    Example
    -------
    >>> values = iter([1, 1, 2, 3])
    >>> _distinct(lambda: next(values), 3)
    [1, 2, 3]
    """
    seen = []
    for _ in range(1000 * count):
        value = draw()
        if value not in seen:
            seen.append(value)
            if len(seen) == count:
                break
    return seen
