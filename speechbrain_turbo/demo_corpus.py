"""Synthetic emotional speech corpus in the IEMOCAP_full_release layout.

IEMOCAP is licence-gated, so nothing here may download it. This module
writes a small stand-in with espeak-ng (run in-process through the
``espeakng-loader`` wheel) in the same folder layout and file formats as
the real ``IEMOCAP_full_release``, so that the data preparation written
for the real corpus reads it unchanged:

- ``Session{k}/sentences/wav/<dialog>/<utterance>.wav``: 16 kHz mono
  int16 PCM, e.g. ``Session1/sentences/wav/Ses01F_impro01/
  Ses01F_impro01_F000.wav``;
- ``Session{k}/dialog/EmoEvaluation/<dialog>.txt``: a header, then one
  summary line per utterance (``[START - END]<TAB>utt<TAB>code<TAB>[V, A,
  D]``) followed by annotator detail lines (``C-E1:``, ``A-E1:``, ...);
  the sub-folders ``Categorical``, ``Attribute`` and ``Self-evaluation``
  hold per-annotator files, as in the real corpus. A reader must only read
  the plain files: ``Self-evaluation/<dialog>.txt`` deliberately has
  summary-like lines carrying the actors' own (sometimes different)
  labels, so a recursive reader double-counts;
- ``Session{k}/dialog/transcriptions/<dialog>.txt``: one line per
  utterance (``utt [START-END]: text``) plus a few lines that are not
  utterances (``..._MXX0 [...]: [BREATHING]``, no wav).

Five sessions, each with one female and one male speaker (ten espeak
voices), both speaking in every dialog. Labels are the IEMOCAP codes: the
four-class set neu, hap, exc (merged into hap by the preparation), ang,
sad, plus about 5% of dropped codes (fru, sur, xxx).

The emotion is carried, with overlap, by both modalities:

- audio: espeak rate, pitch, pitch range, volume and word gap are shifted
  per emotion relative to each speaker's baseline, with per-utterance
  jitter large enough that classes overlap; recording gain varies and
  white/pink noise is added at a random SNR;
- text: only part of the utterances carry emotion-bearing words, and
  those words sometimes belong to another emotion (a flatly spoken "that's
  wonderful news" labelled neu, for instance). Impro dialogs draw fresh
  sentences; script dialogs reuse one pool of script lines across all
  sessions, spoken with different emotions, so text repeats across folds
  as in IEMOCAP.

The tuning constants (emotion shares, prosody shifts, jitter, noise, text
cue rates) are in the tables at the top of this module. They are part of
the corpus fingerprint stored in the ``demo_corpus.json`` marker, so
retuning them re-synthesises an existing corpus rather than reusing it.

Output is deterministic: the same parameters give byte-identical files.
espeak-ng keeps waveform state (phase counters) in global variables across
utterances, so each speaker is rendered, always in the same order, by its
own private copy of the library (fresh globals). Rendering is serial: it
takes about 8 s for the default 1,500 utterances.

Example command line (1,500 utterances, about 75 min of audio)::

    python -m speechbrain_turbo.demo_corpus --output results/demo/corpus

Authors
 * speechbrain-turbo contributors
"""

import _ctypes
import argparse
import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from importlib import metadata

import numpy as np
from scipy.signal import firwin, lfilter, resample_poly
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

# ---------------------------------------------------------------------------
# Tuning tables
# ---------------------------------------------------------------------------

# Bump when the generator changes in a way the tables below do not show.
CORPUS_VERSION = 1
MARKER_NAME = "demo_corpus.json"
SAMPLE_RATE = 16000
NUM_SESSIONS = 5

# One row per speaker: session, gender, espeak voice, then the speaker's
# neutral baseline: rate (words/min), pitch (0-100), pitch range (0-100),
# volume (0-200; espeak clips above about 130, hence the low baseline).
SPEAKERS = (
    (1, "F", "en+f2", 165, 58, 55, 70),
    (1, "M", "en+m3", 160, 40, 50, 72),
    (2, "F", "en-us+f4", 175, 62, 60, 68),
    (2, "M", "en-us+m1", 150, 36, 45, 75),
    (3, "F", "en+f5", 158, 55, 50, 70),
    (3, "M", "en+m7", 170, 45, 55, 70),
    (4, "F", "en-us+f1", 168, 66, 58, 72),
    (4, "M", "en+m5", 155, 42, 48, 68),
    (5, "F", "en+f3", 172, 60, 52, 66),
    (5, "M", "en-us+m6", 162, 38, 52, 74),
)

# Share of each emotion code, in utterances per 150. Quotas are taken over
# the whole corpus (largest remainder), so counts are exact, not sampled.
# neu 44, hap+exc 42, ang 28, sad 28 kept; fru+sur+xxx 8 (5.3%) dropped.
EMOTION_SHARES = {
    "neu": 44,
    "hap": 15,
    "exc": 27,
    "ang": 28,
    "sad": 28,
    "fru": 3,
    "sur": 2,
    "xxx": 3,
}

# Prosody shift per emotion, relative to the speaker baseline:
#   rate: percent of the baseline rate; pitch, range, volume: espeak units;
#   gap: extra pause between words, in units of 10 ms.
# xxx (no annotator agreement) is left near neutral on purpose.
EMOTION_PROSODY = {
    #       rate  pitch  range  volume  gap
    "neu": (0, 0, 0, 0, 0),
    "hap": (10, 11, 22, 12, 0),
    "exc": (17, 16, 30, 20, 0),
    "ang": (15, 5, 28, 36, 0),
    "sad": (-22, -11, -24, -26, 3),
    "fru": (6, 2, 12, 16, 0),
    "sur": (8, 16, 30, 8, 0),
    "xxx": (3, 3, 8, 6, 0),
}

# Standard deviation of the per-utterance jitter, same units as above.
# Large on purpose: the classes must overlap so that audio alone does not
# solve the task.
PROSODY_JITTER = {"rate": 8.0, "pitch": 6.0, "range": 12.0, "volume": 12.0}

# Recording conditions: gain jitter (dB, std) after synthesis, additive
# noise at an SNR drawn uniformly from this range (dB); the noise colour is
# drawn uniformly between white (0) and pink (1).
GAIN_DB_JITTER = 3.0
SNR_DB_RANGE = (5.0, 25.0)

# Text cues: probability that an utterance of this emotion carries
# emotion-bearing words, and probability that those words belong to its
# own emotion (otherwise to another one). neu and xxx have no lexicon:
# their emotional words always come from another emotion. About 45% of
# the utterances carry emotional words overall.
EMOTIONAL_TEXT_PROB = {
    "neu": 0.2,
    "hap": 0.6,
    "exc": 0.6,
    "ang": 0.6,
    "sad": 0.6,
    "fru": 0.6,
    "sur": 0.6,
    "xxx": 0.45,
}
LEXICON_MATCH_PROB = 0.9

# Dialog structure: about this many utterances per speaker per dialog;
# pauses between turns (s); chance of a non-utterance transcript line
# (breathing, laughter) after a turn; size of the shared script pool.
UTTERANCES_PER_SPEAKER_PER_DIALOG = 15
TURN_GAP_RANGE = (0.15, 1.2)
NONVERBAL_PROB = 0.06
SCRIPT_POOL_SIZE = 60

# ---------------------------------------------------------------------------
# Word material
# ---------------------------------------------------------------------------

NAMES = (
    "Anna", "Brian", "Carla", "David", "Ellen", "Frank", "Grace", "Henry",
    "Iris", "Jack", "Karen", "Leo", "Maria", "Nick", "Olivia", "Peter",
)  # fmt: skip
OBJECTS = (
    "the report", "the car key", "the shopping list", "the ticket",
    "the letter", "the package", "the laptop", "the contract",
    "the photo album", "the bill", "the schedule", "the box", "the map",
    "the recipe", "the notebook", "the jacket", "the umbrella", "the form",
    "the lamp", "the suitcase",
)  # fmt: skip
PLACES = (
    "in the kitchen", "at the office", "in the garage", "at the station",
    "on the table", "upstairs", "in the car", "at the bank", "next door",
    "downtown", "at the front desk", "by the window",
)  # fmt: skip
# Time phrases: any tense, past only, future only.
TIMES = (
    "on Friday", "at noon", "after lunch", "around five",
    "before the meeting", "in the morning", "on the weekend",
)  # fmt: skip
PAST_TIMES = (
    "yesterday", "last week", "this morning", "on Tuesday", "last night",
    "an hour ago",
)  # fmt: skip
FUTURE_TIMES = (
    "tomorrow", "tonight", "next month", "next week", "later today",
    "on Monday",
)  # fmt: skip
VERBS = (
    ("bring", "brought"), ("check", "checked"), ("move", "moved"),
    ("send", "sent"), ("find", "found"), ("pick up", "picked up"),
    ("print", "printed"), ("fix", "fixed"), ("sign", "signed"),
    ("leave", "left"), ("return", "returned"), ("pack", "packed"),
    ("clean", "cleaned"), ("open", "opened"),
)  # fmt: skip
ERRANDS = (
    "a new license", "the passport", "the refund", "the parking permit",
    "a library card", "the insurance claim", "the visa",
)  # fmt: skip
STOPS = ("the corner", "the main square", "the school", "the bridge")
NUMBERS = ("five", "ten", "fifteen", "twenty", "thirty", "forty-five")
BAD_DEEDS = (
    "did this", "lied to me", "sold the car", "read my letters",
    "forgot again", "told them everything", "lost the tickets",
    "broke the lamp", "went behind my back", "cancelled the trip",
    "took my money", "ignored my calls",
)  # fmt: skip
# Spoken openers shared by all emotions, so that they carry no cue.
OPENERS = ("", "", "", "", "Well, ", "Look, ", "Oh, ", "Honestly, ")

NEUTRAL_TEMPLATES = (
    "{name} {past} {obj} {place} {past_time}.",
    "Did you {verb} {obj} {time}?",
    "I think {obj} is {place}.",
    "We need to {verb} {obj} {future_time}.",
    "{name} said {obj} would be ready {future_time}.",
    "Could you {verb} {obj} {time}?",
    "I {past} {obj} {past_time}, so it should be {place}.",
    "Let me {verb} {obj} first.",
    "The meeting is {time}, {place}.",
    "Is {obj} still {place}?",
    "{name} will {verb} {obj} {future_time}.",
    "I'm going to {verb} {obj} {time}.",
    "{name} has {obj} {place}.",
    "We {past} {obj} and then went home.",
    "Have you seen {obj}? I left it {place}.",
    "Excuse me, is this the line for {errand}?",
    "I need a form for {errand}.",
    "You have to fill this out for {errand}.",
    "{name} is coming by {future_time} to {verb} {obj}.",
    "Where did {name} put {obj}?",
    "The bus leaves {time} from {stop}.",
    "It takes about {number} minutes to get {place}.",
    "I'll call {name} {future_time} about {obj}.",
    "Okay, so {obj} goes {place}.",
    "{name} asked me to {verb} {obj} {time}.",
    "Do you know if {name} {past} {obj}?",
)

# Emotion-bearing phrases. hap and exc overlap in spirit (IEMOCAP merges
# them); "I can't believe" appears under both ang and exc on purpose.
LEXICONS = {
    "ang": (
        "I can't believe you {bad}", "I'm furious with you",
        "this is outrageous", "how dare you", "don't you dare touch {obj}",
        "get out of my way", "I'm sick of your excuses",
        "stop lying to me", "that is completely unacceptable",
        "you never listen to me", "leave me alone",
        "I've had enough of this nonsense",
        "what the hell were you thinking", "you ruined everything",
        "I'm so angry I could scream", "don't you ever do that again",
        "you had one job and you blew it", "shut up and listen to me",
    ),
    "sad": (
        "I miss {name} so much", "I feel so alone", "it breaks my heart",
        "nothing will ever be the same", "I'm so sorry, I really am",
        "I just want to cry", "{name} is gone and never coming back",
        "I lost everything", "it hurts so much",
        "I don't know what to do anymore", "we'll never see {name} again",
        "I feel so empty inside", "everything fell apart",
        "I wish I could go back", "nobody cares about me",
        "I'm so tired of being lonely", "it was my fault, all of it",
        "I can't stop thinking about {name}",
    ),
    "hap": (
        "that's wonderful news", "I'm so happy for you", "this is lovely",
        "I love it", "what a beautiful day", "thank you so much",
        "that's great, really great", "I'm so glad you came",
        "you made my day", "it's perfect", "congratulations to {name}",
        "I feel wonderful", "what a nice surprise",
        "I'm really pleased with {obj}", "that makes me smile",
        "we had such a good time",
    ),
    "exc": (
        "I can't wait", "this is amazing", "we did it", "oh my gosh, yes",
        "I got the job", "let's go right now", "this is the best day ever",
        "that's incredible", "wow, look at {obj}", "we won",
        "yes, yes, yes", "I'm so excited", "{name} said yes",
        "this is huge", "we're going to Hawaii",
        "I can't believe we actually made it",
    ),
    "fru": (
        "this never works", "why does this keep happening",
        "I've been waiting for hours", "whatever, forget it",
        "nobody ever helps me", "not again", "I give up",
        "this is pointless", "I've told you a hundred times",
    ),
    "sur": (
        "wait, what", "no way", "really, {name}", "I had no idea",
        "are you serious", "you're kidding me", "since when",
    ),
}  # fmt: skip

# IEMOCAP annotation vocabulary: code -> category name in the detail
# lines, and the centre of the valence/activation/dominance ratings (1-5).
CATEGORY_NAMES = {
    "neu": "Neutral state",
    "hap": "Happiness",
    "exc": "Excited",
    "ang": "Anger",
    "sad": "Sadness",
    "fru": "Frustration",
    "sur": "Surprise",
    "fea": "Fear",
    "dis": "Disgust",
    "oth": "Other",
}
VAD_CENTRES = {
    "neu": (3.0, 2.5, 2.5),
    "hap": (4.0, 3.0, 3.0),
    "exc": (4.0, 4.0, 3.5),
    "ang": (1.5, 4.0, 4.0),
    "sad": (1.5, 2.0, 2.0),
    "fru": (2.0, 3.5, 3.0),
    "sur": (3.5, 4.0, 3.0),
    "xxx": (2.5, 3.0, 3.0),
}
NONVERBAL_LABELS = ("[BREATHING]", "[LAUGHTER]", "[GARBAGE]")

# espeak-ng's C interface (speak_lib.h).
_ESPEAK_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples via callback
_ESPEAK_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_ESPEAK_PUNCTUATION, _ESPEAK_CAPITALS, _ESPEAK_WORDGAP = 5, 6, 7
_INSTALL_HINT = (
    "The demo corpus needs espeak-ng from the espeakng-loader package: "
    'pip install -e ".[demo]"'
)


# ---------------------------------------------------------------------------
# espeak-ng
# ---------------------------------------------------------------------------


def _import_espeakng_loader():
    """Imports ``espeakng_loader``, with an install hint when it is missing.

    Returns
    -------
    module
        The ``espeakng_loader`` module.

    Raises
    ------
    ImportError
        When the package is not installed.

    Example
    -------
    >>> _import_espeakng_loader().__name__
    'espeakng_loader'
    """
    try:
        import espeakng_loader
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return espeakng_loader


class EspeakSynthesizer:
    """In-process espeak-ng text-to-speech through ctypes.

    espeak-ng keeps waveform state (phase and flutter counters) in global
    variables, so an utterance's samples depend on what the library
    synthesised before. With ``private=True`` this instance loads its own
    copy of the library (a fresh file, hence fresh globals): its output
    then depends only on the sequence it was asked to synthesise, whatever
    else the process did. Close it (or use ``with``) to unload the copy.

    Arguments
    ---------
    private : bool
        Load a private copy of the library (reproducible) rather than the
        process-wide one.

    Example
    -------
    >>> with EspeakSynthesizer() as tts:
    ...     wav = tts.synthesize("Hello there.", voice="en+f2")
    >>> wav.dtype.name, tts.sample_rate, len(wav) > tts.sample_rate // 4
    ('int16', 22050, True)
    >>> with EspeakSynthesizer() as tts:
    ...     again = tts.synthesize("Hello there.", voice="en+f2")
    >>> bool((wav == again).all())
    True
    """

    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_short),
        ctypes.c_int,
        ctypes.c_void_p,
    )

    def __init__(self, private=True):
        loader = _import_espeakng_loader()
        self._private = private
        self._lib = lib = self._load(loader.get_library_path(), private)
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int] * 3
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_SetSynthCallback.argtypes = [self._CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        data_path = loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(
            _ESPEAK_SYNCHRONOUS, 0, data_path, 0
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to start ({data_path})")
        self._chunks = []
        # Kept on self: ctypes would otherwise free the callback thunk.
        self._callback = self._CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    @staticmethod
    def _load(path, private):
        """Loads the library, or a private copy of it.

        Arguments
        ---------
        path : str
            The installed ``libespeak-ng`` file.
        private : bool
            Copy it to a temporary file and load that copy.

        Returns
        -------
        ctypes.CDLL
            The loaded library.

        Example
        -------
        >>> loader = _import_espeakng_loader()
        >>> lib = EspeakSynthesizer._load(loader.get_library_path(), True)
        >>> hasattr(lib, "espeak_Synth")
        True
        """
        if not private:
            return ctypes.CDLL(path)
        folder = tempfile.mkdtemp(prefix="espeak-ng-")
        copy = os.path.join(folder, os.path.basename(path))
        try:
            shutil.copyfile(path, copy)
            return ctypes.CDLL(copy)
        except OSError as error:
            raise OSError(
                f"Cannot load a private copy of espeak-ng from {folder} "
                f"({error}); point TMPDIR to a folder that allows loading "
                "libraries."
            ) from error
        finally:
            # Once loaded, the file is no longer needed (POSIX); where it
            # cannot be removed (Windows), it stays in the temp folder.
            shutil.rmtree(folder, ignore_errors=True)

    def close(self):
        """Stops espeak-ng and unloads a private copy of the library.

        Returns
        -------
        None

        Example
        -------
        >>> tts = EspeakSynthesizer()
        >>> tts.close()
        >>> tts.close()  # closing twice is harmless
        """
        lib, self._lib = getattr(self, "_lib", None), None
        if lib is None:
            return
        lib.espeak_Terminate()
        dlclose = getattr(_ctypes, "dlclose", None)
        if self._private and dlclose is not None:
            dlclose(lib._handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _collect(self, samples, num_samples, events):
        """Receives one block of samples from espeak-ng.

        Arguments
        ---------
        samples : ctypes pointer to c_short
            The block (NULL at the end of the utterance).
        num_samples : int
            Number of samples in the block.
        events : ctypes.c_void_p
            espeak events (unused).

        Returns
        -------
        int
            0, to let espeak continue.

        Example
        -------
        >>> with EspeakSynthesizer() as tts:
        ...     tts._collect((ctypes.c_short * 3)(1, 2, 3), 3, None)
        0
        >>> tts._chunks[-1].tolist()
        [1, 2, 3]
        """
        if num_samples > 0:
            block = np.ctypeslib.as_array(samples, shape=(num_samples,))
            self._chunks.append(block.copy())
        return 0

    def synthesize(
        self,
        text,
        voice,
        rate=175,
        pitch=50,
        pitch_range=50,
        volume=100,
        word_gap=0,
        seed=0,
    ):
        """Speaks one sentence; every setting is given explicitly.

        Arguments
        ---------
        text : str
            Plain text (no SSML).
        voice : str
            espeak voice and variant, e.g. ``"en+f2"`` or ``"en-us+m1"``.
        rate : int
            Speaking rate in words per minute (80-450).
        pitch : int
            Base pitch, 0-100.
        pitch_range : int
            Pitch range, 0 (monotone) to 100.
        volume : int
            Volume, 0-200 (espeak clips above about 130).
        word_gap : int
            Extra pause between words, in units of 10 ms.
        seed : int
            Seed of espeak's random generator.

        Returns
        -------
        numpy.ndarray
            int16 samples at ``self.sample_rate`` (22,050 Hz).

        Example
        -------
        >>> with EspeakSynthesizer() as tts:
        ...     slow = tts.synthesize("One two three.", "en+m3", rate=120)
        ...     fast = tts.synthesize("One two three.", "en+m3", rate=240)
        >>> len(slow) > len(fast)
        True
        """
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        settings = (
            (_ESPEAK_RATE, rate),
            (_ESPEAK_VOLUME, volume),
            (_ESPEAK_PITCH, pitch),
            (_ESPEAK_RANGE, pitch_range),
            (_ESPEAK_WORDGAP, word_gap),
            (_ESPEAK_PUNCTUATION, 0),
            (_ESPEAK_CAPITALS, 0),
        )
        for parameter, value in settings:
            lib.espeak_SetParameter(parameter, int(value), 0)
        lib.espeak_ng_SetRandSeed(int(seed))
        self._chunks = []
        data = text.encode("utf-8")
        status = lib.espeak_Synth(
            data,
            len(data) + 1,
            0,
            _ESPEAK_POS_CHARACTER,
            0,
            _ESPEAK_CHARS_UTF8,
            None,
            None,
        )
        if status != 0 or not self._chunks:
            raise RuntimeError(f"espeak-ng failed ({status}) on {text!r}")
        return np.concatenate(self._chunks)


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Corpus plan
# ---------------------------------------------------------------------------


@dataclass
class UtteranceSpec:
    """Everything needed to render and annotate one utterance.

    Arguments
    ---------
    utt_id : str
        e.g. ``Ses01F_impro01_F000``.
    dialog : str
        e.g. ``Ses01F_impro01``.
    session : int
        1-5.
    gender : str
        ``F`` or ``M``.
    emotion : str
        IEMOCAP code.
    text : str
        Transcript.
    voice : str
        espeak voice.
    rate, pitch, pitch_range, volume, word_gap : int
        espeak settings.
    espeak_seed, noise_seed : int
        Seeds of espeak's generator and of the noise.
    gain_db, snr_db, noise_colour : float
        Recording gain, signal-to-noise ratio, noise colour (0 white,
        1 pink).
    gap_before : float
        Pause before the turn, in seconds.
    categories : tuple of str
        Category names given by three annotators.
    self_category : str
        The actor's own label (Self-evaluation file).
    ratings : tuple of tuple of int
        Valence, activation, dominance of two annotators.
    nonverbal : str or None
        Label of a non-utterance transcript line after this turn.

    Example
    -------
    >>> spec = UtteranceSpec("Ses01F_impro01_F000", "Ses01F_impro01", 1, "F")
    >>> spec.emotion
    'neu'
    """

    utt_id: str
    dialog: str
    session: int
    gender: str
    emotion: str = "neu"
    text: str = ""
    voice: str = "en"
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    volume: int = 70
    word_gap: int = 0
    espeak_seed: int = 0
    noise_seed: int = 0
    gain_db: float = 0.0
    snr_db: float = 20.0
    noise_colour: float = 0.0
    gap_before: float = 0.5
    categories: tuple = ("Neutral state",) * 3
    self_category: str = "Neutral state"
    ratings: tuple = ((3, 3, 3), (3, 3, 3))
    nonverbal: object = None


@dataclass
class DialogSpec:
    """One dialog: its name, session, start offset and turns in order.

    Arguments
    ---------
    name : str
        e.g. ``Ses01M_script01_2``.
    session : int
        1-5.
    script : bool
        Whether its lines come from the shared script pool.
    start : float
        Start time of the first turn, in seconds.
    utterances : list of UtteranceSpec
        Turns in time order.

    Example
    -------
    >>> DialogSpec("Ses01F_impro01", 1, False, 2.0).utterances
    []
    """

    name: str
    session: int
    script: bool
    start: float
    utterances: list = field(default_factory=list)


def emotion_quotas(total):
    """Exact number of utterances per emotion code for a corpus size.

    Largest-remainder rounding of ``EMOTION_SHARES``; ties go to the code
    listed first.

    Arguments
    ---------
    total : int
        Number of utterances in the corpus.

    Returns
    -------
    dict
        ``{code: count}``, summing to ``total``.

    Example
    -------
    >>> emotion_quotas(1500)["neu"], sum(emotion_quotas(37).values())
    (440, 37)
    """
    weight = sum(EMOTION_SHARES.values())
    exact = {c: total * s / weight for c, s in EMOTION_SHARES.items()}
    quotas = {c: int(np.floor(x)) for c, x in exact.items()}
    order = sorted(exact, key=lambda c: -(exact[c] - quotas[c]))
    for code in order[: total - sum(quotas.values())]:
        quotas[code] += 1
    return quotas


def dialog_names(session, count):
    """IEMOCAP-style dialog names of one session.

    Alternates the leading speaker (F, M) and the kind (impro, script):
    ``Ses01F_impro01, Ses01M_impro01, Ses01F_script01_1, ...``.

    Arguments
    ---------
    session : int
        Session number, 1-5.
    count : int
        Number of dialogs.

    Returns
    -------
    list of (str, bool)
        Dialog names and whether each one is scripted.

    Example
    -------
    >>> dialog_names(2, 4)[2:]
    [('Ses02F_script01_1', True), ('Ses02M_script01_1', True)]
    """
    names = []
    for index in range(count):
        lead = "FM"[index % 2]
        pair = index // 2
        prefix = f"Ses{session:02d}{lead}"
        if pair % 2 == 0:
            names.append((f"{prefix}_impro{pair // 2 + 1:02d}", False))
        else:
            script = pair // 2
            number, part = script // 2 + 1, script % 2 + 1
            names.append((f"{prefix}_script{number:02d}_{part}", True))
    return names


def _turn_order(rng, num_f, num_m, lead):
    """Speaker order of a dialog's turns, mostly alternating.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    num_f, num_m : int
        Turns of the female and the male speaker.
    lead : str
        Gender of the first turn (when it has turns).

    Returns
    -------
    list of str
        ``"F"``/``"M"`` per turn.

    Example
    -------
    >>> order = _turn_order(np.random.default_rng(0), 3, 2, "M")
    >>> order[0], order.count("F"), order.count("M")
    ('M', 3, 2)
    """
    left = {"F": num_f, "M": num_m}
    order = []
    current = lead if left[lead] else ("M" if lead == "F" else "F")
    while left["F"] + left["M"]:
        if not left[current]:
            current = "M" if current == "F" else "F"
        order.append(current)
        left[current] -= 1
        other = "M" if current == "F" else "F"
        # Mostly alternate; sometimes the same speaker goes on.
        if left[other] and rng.random() < 0.85:
            current = other
    return order


def _annotations(emotion, rng):
    """Annotator categories, self label and dimensional ratings.

    Arguments
    ---------
    emotion : str
        The consensus code.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    categories : tuple of str
        Three annotators' category names; for a real code at least two
        agree with it, for ``xxx`` all three differ.
    self_category : str
        The actor's own category name.
    ratings : tuple of tuple of int
        Two annotators' (valence, activation, dominance), 1-5.

    Example
    -------
    >>> cats, own, ratings = _annotations("ang", np.random.default_rng(0))
    >>> cats.count("Anger") >= 2, len(ratings)
    (True, 2)
    """
    names = list(CATEGORY_NAMES.values())
    if emotion == "xxx":
        picks = rng.choice(len(names), size=3, replace=False)
        categories = tuple(names[int(i)] for i in picks)
        own = _pick(rng, names)
    else:
        target = CATEGORY_NAMES[emotion]
        others = [n for n in names if n != target]
        categories = [target, target, target]
        if rng.random() < 0.5:
            categories[int(rng.integers(3))] = _pick(rng, others)
        categories = tuple(categories)
        own = target if rng.random() < 0.7 else _pick(rng, others)
    centre = np.asarray(VAD_CENTRES[emotion])
    ratings = tuple(
        tuple(
            int(v)
            for v in np.clip(np.rint(centre + rng.normal(0, 0.6, 3)), 1, 5)
        )
        for _ in range(2)
    )
    return categories, own, ratings


def plan_corpus(utterances_per_speaker, seed):
    """Draws the whole corpus: dialogs, turns, labels, texts, prosody.

    Every random choice is made here, from ``seed`` alone, so that the
    rendering only executes the plan.

    Arguments
    ---------
    utterances_per_speaker : int
        Utterances of each of the 10 speakers.
    seed : int
        Random seed.

    Returns
    -------
    list of DialogSpec
        Dialogs of all sessions, in session order.

    Example
    -------
    >>> dialogs = plan_corpus(utterances_per_speaker=4, seed=0)
    >>> sum(len(d.utterances) for d in dialogs)
    40
    >>> sorted({d.session for d in dialogs})
    [1, 2, 3, 4, 5]
    """
    rng = np.random.default_rng(seed)
    # Script lines are drawn once, from their own stream, and shared by
    # all sessions.
    scripts = script_pool(np.random.default_rng([seed, 1]))
    total = utterances_per_speaker * len(SPEAKERS)
    labels = [c for c, n in emotion_quotas(total).items() for _ in range(n)]
    labels = [labels[int(i)] for i in rng.permutation(total)]
    # Speaker i gets the i-th slice of the shuffled labels.
    n = utterances_per_speaker
    labels_of = {i: labels[i * n : (i + 1) * n] for i in range(len(SPEAKERS))}
    num_dialogs = max(
        min(utterances_per_speaker, 3),
        int(round(utterances_per_speaker / UTTERANCES_PER_SPEAKER_PER_DIALOG)),
    )
    dialogs = []
    for session in range(1, NUM_SESSIONS + 1):
        speakers = {
            row[1]: (index, row)
            for index, row in enumerate(SPEAKERS)
            if row[0] == session
        }
        # Each speaker's utterances spread evenly over the dialogs.
        split = {
            g: np.array_split(np.arange(utterances_per_speaker), num_dialogs)
            for g in speakers
        }
        for d, (name, script) in enumerate(dialog_names(session, num_dialogs)):
            dialog = DialogSpec(name, session, script, rng.uniform(1.0, 4.0))
            order = _turn_order(
                rng, len(split["F"][d]), len(split["M"][d]), name[5]
            )
            counters = {"F": 0, "M": 0}
            nonverbal_counter = 0
            for gender in order:
                index, row = speakers[gender]
                position = split[gender][d][counters[gender]]
                utt = _plan_utterance(
                    rng,
                    dialog,
                    f"{name}_{gender}{counters[gender]:03d}",
                    gender,
                    row,
                    labels_of[index][position],
                    scripts,
                )
                counters[gender] += 1
                if utt.nonverbal is not None:
                    utt.nonverbal = (
                        f"{name}_{_pick(rng, 'FM')}XX{nonverbal_counter}",
                        utt.nonverbal,
                    )
                    nonverbal_counter += 1
                dialog.utterances.append(utt)
            dialogs.append(dialog)
    return dialogs


def _plan_utterance(rng, dialog, utt_id, gender, speaker, emotion, scripts):
    """Draws the text, prosody, noise and annotations of one utterance.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    dialog : DialogSpec
        The dialog it belongs to.
    utt_id : str
        Utterance name.
    gender : str
        ``F`` or ``M``.
    speaker : tuple
        Its row of ``SPEAKERS``.
    emotion : str
        Its emotion code.
    scripts : dict
        Script pool from ``script_pool``.

    Returns
    -------
    UtteranceSpec
        The utterance plan.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> dialog = DialogSpec("Ses01F_impro01", 1, False, 1.0)
    >>> spec = _plan_utterance(
    ...     rng, dialog, "Ses01F_impro01_F000", "F", SPEAKERS[0], "sad", {}
    ... )
    >>> spec.voice, spec.rate < 300
    ('en+f2', True)
    """
    lexicon = choose_lexicon(emotion, rng)
    if dialog.script:
        # Script lines repeat across sessions, not within one dialog.
        used = {u.text for u in dialog.utterances}
        lines = scripts[lexicon]
        text = _pick(rng, [t for t in lines if t not in used] or lines)
    elif lexicon is None:
        text = neutral_sentence(rng)
    else:
        text = emotional_sentence(lexicon, rng)
    _, _, voice, base_rate, base_pitch, base_range, base_volume = speaker
    d_rate, d_pitch, d_range, d_volume, gap = EMOTION_PROSODY[emotion]
    jitter = {k: rng.normal(0.0, sd) for k, sd in PROSODY_JITTER.items()}
    rate = base_rate * (1.0 + (d_rate + jitter["rate"]) / 100.0)
    pitch = base_pitch + d_pitch + jitter["pitch"]
    pitch_range = base_range + d_range + jitter["range"]
    volume = base_volume + d_volume + jitter["volume"]
    categories, self_category, ratings = _annotations(emotion, rng)
    nonverbal = None
    if rng.random() < NONVERBAL_PROB:
        nonverbal = _pick(rng, NONVERBAL_LABELS)
    return UtteranceSpec(
        utt_id=utt_id,
        dialog=dialog.name,
        session=dialog.session,
        gender=gender,
        emotion=emotion,
        text=text,
        voice=voice,
        rate=int(np.clip(round(rate), 80, 400)),
        pitch=int(np.clip(round(pitch), 0, 100)),
        pitch_range=int(np.clip(round(pitch_range), 0, 100)),
        volume=int(np.clip(round(volume), 10, 130)),
        word_gap=int(gap),
        espeak_seed=int(rng.integers(2**31 - 1)),
        noise_seed=int(rng.integers(2**63 - 1)),
        gain_db=float(rng.normal(0.0, GAIN_DB_JITTER)),
        snr_db=float(rng.uniform(*SNR_DB_RANGE)),
        noise_colour=float(rng.random()),
        gap_before=float(rng.uniform(*TURN_GAP_RANGE)),
        categories=categories,
        self_category=self_category,
        ratings=ratings,
        nonverbal=nonverbal,
    )


# ---------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------


def coloured_noise(length, colour, rng):
    """Unit-variance noise between white (0) and pink (1).

    Arguments
    ---------
    length : int
        Number of samples.
    colour : float
        Mixing weight of the pink component, 0-1.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        float64 noise with unit variance.

    Example
    -------
    >>> noise = coloured_noise(16000, 0.5, np.random.default_rng(0))
    >>> round(float(noise.std()), 2)
    1.0
    """
    white = rng.standard_normal(length)
    # Paul Kellett's "economy" pinking filter: -3 dB/octave over the band.
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    pink = lfilter(b, a, rng.standard_normal(length))
    pink /= pink.std() + 1e-12
    noise = np.sqrt(1.0 - colour) * white + np.sqrt(colour) * pink
    return noise / (noise.std() + 1e-12)


@lru_cache(maxsize=4)
def _resampling_filter(up, down):
    """Low-pass FIR filter for polyphase resampling by ``up / down``.

    The design ``resample_poly`` would make on every call (Kaiser window,
    beta 5), made once per ratio.

    Arguments
    ---------
    up, down : int
        Resampling ratio, e.g. 320 / 441 for 22,050 -> 16,000 Hz.

    Returns
    -------
    numpy.ndarray
        Filter taps.

    Example
    -------
    >>> _resampling_filter(320, 441).shape
    (8821,)
    """
    cutoff = max(up, down)
    return firwin(2 * 10 * cutoff + 1, 1.0 / cutoff, window=("kaiser", 5.0))


def render_utterance(tts, spec):
    """Synthesises one utterance: espeak, 16 kHz, gain, noise, int16.

    Arguments
    ---------
    tts : EspeakSynthesizer
        The synthesiser.
    spec : UtteranceSpec
        What to say and how.

    Returns
    -------
    numpy.ndarray
        int16 samples at 16 kHz.

    Example
    -------
    >>> spec = UtteranceSpec("u", "d", 1, "F", text="Hi there.")
    >>> with EspeakSynthesizer() as tts:
    ...     wav = render_utterance(tts, spec)
    >>> wav.dtype.name, int(np.abs(wav).max()) <= 32000
    ('int16', True)
    """
    raw = tts.synthesize(
        spec.text,
        spec.voice,
        rate=spec.rate,
        pitch=spec.pitch,
        pitch_range=spec.pitch_range,
        volume=spec.volume,
        word_gap=spec.word_gap,
        seed=spec.espeak_seed,
    )
    # espeak-ng speaks at 22,050 Hz: 16,000 / 22,050 = 320 / 441.
    ratio = Fraction(SAMPLE_RATE, tts.sample_rate)
    up, down = ratio.numerator, ratio.denominator
    speech = resample_poly(
        raw.astype(np.float64), up, down, window=_resampling_filter(up, down)
    )
    speech *= 10.0 ** (spec.gain_db / 20.0)
    rng = np.random.default_rng(spec.noise_seed)
    noise = coloured_noise(len(speech), spec.noise_colour, rng)
    power = float(np.mean(speech**2))
    noisy = speech + noise * np.sqrt(power / 10.0 ** (spec.snr_db / 10.0))
    # Peak-safe: scale down the whole utterance rather than clip.
    peak = float(np.abs(noisy).max())
    if peak > 32000.0:
        noisy *= 32000.0 / peak
    return np.clip(np.rint(noisy), -32767, 32767).astype("<i2")


def write_wav(path, samples, sample_rate=SAMPLE_RATE):
    """Writes mono int16 PCM samples to a plain RIFF/WAVE file.

    Arguments
    ---------
    path : str
        Destination file.
    samples : numpy.ndarray
        int16 samples.
    sample_rate : int
        Sampling rate in Hz.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.wav")
    >>> write_wav(path, np.zeros(160, dtype=np.int16))
    >>> os.path.getsize(path)
    364
    """
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def _render_chunk(jobs):
    """Renders a list of utterances in order, with a private espeak-ng.

    Arguments
    ---------
    jobs : list of (UtteranceSpec, str)
        Utterance plans and their wav paths.

    Returns
    -------
    dict
        ``{utt_id: number of samples}``.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "u.wav")
    >>> spec = UtteranceSpec("u", "d", 1, "F", text="Hi.")
    >>> _render_chunk([(spec, path)])["u"] > 0
    True
    """
    lengths = {}
    with EspeakSynthesizer(private=True) as tts:
        for spec, path in jobs:
            samples = render_utterance(tts, spec)
            write_wav(path, samples)
            lengths[spec.utt_id] = len(samples)
    return lengths


# ---------------------------------------------------------------------------
# Text files
# ---------------------------------------------------------------------------


def _timeline(dialog, lengths):
    """Start and end times of the turns and non-utterance lines.

    Turns follow each other with the planned pauses; each lasts exactly
    its wav's duration. A non-utterance line sits in the pause after its
    turn, which is widened to hold it.

    Arguments
    ---------
    dialog : DialogSpec
        The dialog.
    lengths : dict
        ``{utt_id: number of samples}``.

    Returns
    -------
    list of (float, float, UtteranceSpec or (str, str))
        Time-ordered entries: utterance plans, or (name, label) pairs for
        the non-utterance lines.

    Example
    -------
    >>> dialog = DialogSpec("d", 1, False, 1.0)
    >>> dialog.utterances.append(UtteranceSpec("d_F000", "d", 1, "F"))
    >>> _timeline(dialog, {"d_F000": 16000})[0][:2]
    (1.0, 2.0)
    """
    entries = []
    now = dialog.start
    pending = None
    for index, spec in enumerate(dialog.utterances):
        gap = 0.0 if index == 0 else spec.gap_before
        if pending is not None:
            start = now + 0.05
            end = start + 0.5
            entries.append((start, end, pending))
            gap = max(gap, end - now + 0.1)
        start = now + gap
        end = start + lengths[spec.utt_id] / SAMPLE_RATE
        entries.append((start, end, spec))
        now = end
        pending = spec.nonverbal
    if pending is not None:
        entries.append((now + 0.05, now + 0.55, pending))
    return entries


def format_emo_evaluation(entries):
    r"""Text of an ``EmoEvaluation/<dialog>.txt`` file.

    Arguments
    ---------
    entries : list
        Output of ``_timeline``.

    Returns
    -------
    str
        Header, then per utterance a blank line, the summary line and the
        annotator detail lines.

    Example
    -------
    >>> ratings = ((3, 2, 2), (2, 3, 3))
    >>> spec = UtteranceSpec("d_F000", "d", 1, "F", ratings=ratings)
    >>> text = format_emo_evaluation([(6.29012, 8.2357, spec)])
    >>> text.splitlines()[2]
    '[6.2901 - 8.2357]\td_F000\tneu\t[2.5000, 2.5000, 2.5000]'
    """
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for start, end, spec in entries:
        if not isinstance(spec, UtteranceSpec):
            continue
        vad = np.mean(np.asarray(spec.ratings, dtype=float), axis=0)
        lines.append(
            f"[{start:.4f} - {end:.4f}]\t{spec.utt_id}\t{spec.emotion}\t"
            f"[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"
        )
        for number, category in enumerate(spec.categories, start=1):
            lines.append(f"C-E{number}:\t{category};\t()")
        lines.append(f"C-{spec.gender}1:\t{spec.self_category};\t()")
        for number, (v, a, d) in enumerate(spec.ratings, start=1):
            lines.append(f"A-E{number}:\tval {v}; act {a}; dom  {d};\t()")
        lines.append("")
    return "\n".join(lines) + "\n"


def format_transcription(entries):
    r"""Text of a ``transcriptions/<dialog>.txt`` file.

    Arguments
    ---------
    entries : list
        Output of ``_timeline``.

    Returns
    -------
    str
        One line per utterance or non-utterance event, in time order.

    Example
    -------
    >>> spec = UtteranceSpec("d_F000", "d", 1, "F", text="Excuse me.")
    >>> format_transcription([(6.29012, 8.2357, spec)])
    'd_F000 [006.2901-008.2357]: Excuse me.\n'
    """
    lines = []
    for start, end, item in entries:
        name, text = (
            (item.utt_id, item.text)
            if isinstance(item, UtteranceSpec)
            else item
        )
        lines.append(f"{name} [{start:08.4f}-{end:08.4f}]: {text}")
    return "\n".join(lines) + "\n"


def _write_side_files(emo_dir, dialog, entries):
    """Writes the Categorical, Attribute and Self-evaluation files.

    Arguments
    ---------
    emo_dir : str
        The session's ``dialog/EmoEvaluation`` folder.
    dialog : DialogSpec
        The dialog.
    entries : list
        Output of ``_timeline``.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _write_side_files(folder, DialogSpec("d", 1, False, 1.0), [])
    >>> sorted(os.listdir(folder))
    ['Attribute', 'Categorical', 'Self-evaluation']
    """
    specs = [(s, e, u) for s, e, u in entries if isinstance(u, UtteranceSpec)]
    categorical = [[], [], []]
    attribute = [[], []]
    own = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    codes = {name: code for code, name in CATEGORY_NAMES.items()}
    for start, end, spec in specs:
        for lines, category in zip(categorical, spec.categories):
            lines.append(f"{spec.utt_id} :{category}; ()")
        for lines, (v, a, d) in zip(attribute, spec.ratings):
            lines.append(f"{spec.utt_id} :val {v}; act {a}; dom  {d}; ()")
        # Summary-like on purpose: only a reader that wrongly descends
        # into the sub-folders picks these labels up.
        v, a, d = spec.ratings[0]
        own.append(
            f"[{start:.4f} - {end:.4f}]\t{spec.utt_id}\t"
            f"{codes.get(spec.self_category, 'oth')}\t"
            f"[{v:.4f}, {a:.4f}, {d:.4f}]"
        )
    files = [
        (f"Categorical/{dialog.name}_e{i + 1}_cat.txt", lines)
        for i, lines in enumerate(categorical)
    ]
    files += [
        (f"Attribute/{dialog.name}_e{i + 1}_atr.txt", lines)
        for i, lines in enumerate(attribute)
    ]
    files.append((f"Self-evaluation/{dialog.name}.txt", own))
    for relative, lines in files:
        path = os.path.join(emo_dir, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join(lines) + "\n")


def _write_dialog_texts(output, dialog, lengths):
    """Writes a dialog's EmoEvaluation, side and transcription files.

    Arguments
    ---------
    output : str
        Corpus root.
    dialog : DialogSpec
        The dialog.
    lengths : dict
        ``{utt_id: number of samples}``.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> dialog = DialogSpec("Ses01F_impro01", 1, False, 1.0)
    >>> _write_dialog_texts(root, dialog, {})
    >>> sorted(os.listdir(os.path.join(root, "Session1", "dialog")))
    ['EmoEvaluation', 'transcriptions']
    """
    session_dir = os.path.join(output, f"Session{dialog.session}", "dialog")
    emo_dir = os.path.join(session_dir, "EmoEvaluation")
    trans_dir = os.path.join(session_dir, "transcriptions")
    os.makedirs(emo_dir, exist_ok=True)
    os.makedirs(trans_dir, exist_ok=True)
    entries = _timeline(dialog, lengths)
    texts = (
        (os.path.join(emo_dir, f"{dialog.name}.txt"), format_emo_evaluation),
        (os.path.join(trans_dir, f"{dialog.name}.txt"), format_transcription),
    )
    for path, formatter in texts:
        with open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(formatter(entries))
    _write_side_files(emo_dir, dialog, entries)


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------


def corpus_fingerprint():
    """Hash of the generator version, tuning tables and word material.

    Stored in the marker, so that retuning the tables (or another espeak
    build) re-synthesises an existing corpus instead of reusing it.

    Returns
    -------
    str
        Hex SHA-256 digest (first 16 characters).

    Example
    -------
    >>> len(corpus_fingerprint())
    16
    """
    try:
        espeak_version = metadata.version("espeakng-loader")
    except metadata.PackageNotFoundError:
        espeak_version = "unknown"
    material = {
        "version": CORPUS_VERSION,
        "espeakng_loader": espeak_version,
        "speakers": SPEAKERS,
        "shares": EMOTION_SHARES,
        "prosody": EMOTION_PROSODY,
        "jitter": PROSODY_JITTER,
        "gain": GAIN_DB_JITTER,
        "snr": SNR_DB_RANGE,
        "text": [EMOTIONAL_TEXT_PROB, LEXICON_MATCH_PROB, LEXICONS],
        "words": [NAMES, OBJECTS, PLACES, TIMES, PAST_TIMES, FUTURE_TIMES],
        "verbs": [VERBS, ERRANDS, STOPS],
        "more_words": [NUMBERS, BAD_DEEDS, OPENERS, NEUTRAL_TEMPLATES],
        "dialogs": [
            UTTERANCES_PER_SPEAKER_PER_DIALOG,
            TURN_GAP_RANGE,
            NONVERBAL_PROB,
            SCRIPT_POOL_SIZE,
        ],
        "annotations": [CATEGORY_NAMES, VAD_CENTRES, NONVERBAL_LABELS],
    }
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _session_folders(output):
    """The ``Session<k>`` folders this module may own under ``output``.

    Arguments
    ---------
    output : str
        Corpus root.

    Returns
    -------
    list of str
        Existing folder paths named ``Session`` + digits.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "Session3"))
    >>> [os.path.basename(p) for p in _session_folders(root)]
    ['Session3']
    """
    return sorted(
        os.path.join(output, name)
        for name in os.listdir(output)
        if re.fullmatch(r"Session\d+", name)
        and os.path.isdir(os.path.join(output, name))
    )


def _count_wavs(output):
    """Number of wav files under the ``Session*/sentences/wav`` folders.

    Arguments
    ---------
    output : str
        Corpus root.

    Returns
    -------
    int
        Count of ``*.wav`` files.

    Example
    -------
    >>> import tempfile
    >>> _count_wavs(tempfile.mkdtemp())
    0
    """
    count = 0
    for session in _session_folders(output):
        for _, _, files in os.walk(os.path.join(session, "sentences", "wav")):
            count += sum(name.endswith(".wav") for name in files)
    return count


def _read_marker(output):
    """Reads the marker of an existing folder.

    Arguments
    ---------
    output : str
        Corpus root.

    Returns
    -------
    dict or None
        The marker, or None when the folder has none.

    Raises
    ------
    RuntimeError
        When the marker is not valid JSON (the folder is then left alone).

    Example
    -------
    >>> import tempfile
    >>> _read_marker(tempfile.mkdtemp()) is None
    True
    """
    path = os.path.join(output, MARKER_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            marker = json.load(handle)
    except (OSError, ValueError) as error:
        raise RuntimeError(
            f"Cannot read the demo corpus marker {path} ({error}); "
            "delete the folder or pick another output folder."
        ) from error
    if not isinstance(marker, dict):
        raise RuntimeError(f"Unexpected content in {path}.")
    return marker


def _write_marker(output, marker):
    """Writes the marker atomically (a crash never leaves half a file).

    Arguments
    ---------
    output : str
        Corpus root.
    marker : dict
        JSON-serialisable content.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> _write_marker(root, {"complete": False})
    >>> _read_marker(root)
    {'complete': False}
    """
    path = os.path.join(output, MARKER_NAME)
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as handle:
        json.dump(marker, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(path + ".tmp", path)


def _summarize(dialogs, lengths):
    """Counts of a planned and rendered corpus.

    Arguments
    ---------
    dialogs : list of DialogSpec
        The plan.
    lengths : dict
        ``{utt_id: number of samples}``.

    Returns
    -------
    dict
        ``num_utterances``, ``num_wav_files``, ``num_dialogs``,
        ``per_emotion`` (IEMOCAP codes), ``four_class`` (neu, hap with exc
        merged, ang, sad), ``num_four_class``, ``num_dropped``,
        ``per_session`` and ``total_duration_s``.

    Example
    -------
    >>> dialog = DialogSpec("Ses01F_impro01", 1, False, 1.0)
    >>> dialog.utterances.append(UtteranceSpec("a", "d", 1, "F", "exc"))
    >>> _summarize([dialog], {"a": 8000})["four_class"]
    {'neu': 0, 'hap': 1, 'ang': 0, 'sad': 0}
    """
    specs = [u for d in dialogs for u in d.utterances]
    per_emotion = {code: 0 for code in EMOTION_SHARES}
    per_session = {f"Session{k}": 0 for k in range(1, NUM_SESSIONS + 1)}
    for spec in specs:
        per_emotion[spec.emotion] += 1
        per_session[f"Session{spec.session}"] += 1
    four_class = {
        "neu": per_emotion["neu"],
        "hap": per_emotion["hap"] + per_emotion["exc"],
        "ang": per_emotion["ang"],
        "sad": per_emotion["sad"],
    }
    total_samples = sum(lengths[u.utt_id] for u in specs)
    return {
        "num_utterances": len(specs),
        "num_wav_files": len(lengths),
        "num_dialogs": len(dialogs),
        "per_emotion": per_emotion,
        "four_class": four_class,
        "num_four_class": sum(four_class.values()),
        "num_dropped": len(specs) - sum(four_class.values()),
        "per_session": per_session,
        "total_duration_s": round(total_samples / SAMPLE_RATE, 3),
    }


def _prepare_output(output, parameters):
    """Decides between reuse and (re-)synthesis; cleans what is ours.

    Arguments
    ---------
    output : str
        Corpus root.
    parameters : dict
        Parameters of the requested corpus.

    Returns
    -------
    dict or None
        The stored summary when the existing corpus can be reused, else
        None (the folder is then ready for synthesis).

    Raises
    ------
    FileExistsError
        When ``output`` is a non-empty folder without a marker, or a file.

    Example
    -------
    >>> import tempfile
    >>> _prepare_output(tempfile.mkdtemp(), {"seed": 1}) is None
    True
    """
    if os.path.exists(output) and not os.path.isdir(output):
        raise FileExistsError(
            f"Demo corpus output {output!r} exists and is not a folder."
        )
    if not os.path.isdir(output) or not os.listdir(output):
        return None
    marker = _read_marker(output)
    if marker is None:
        # Never delete data we did not write.
        raise FileExistsError(
            f"Refusing to write the demo corpus into {output!r}: the folder "
            f"is not empty and has no {MARKER_NAME} marker. Pick an empty "
            "or new folder."
        )
    summary = marker.get("summary") or {}
    if (
        marker.get("complete")
        and marker.get("parameters") == parameters
        and summary.get("num_wav_files") == _count_wavs(output)
    ):
        return summary
    if marker.get("parameters") != parameters:
        reason = "its parameters differ"
    elif not marker.get("complete"):
        reason = "it is incomplete"
    else:
        reason = "its wav files do not match the marker"
    logger.info(
        "Demo corpus in %s is stale (%s): re-synthesising it.", output, reason
    )
    for folder in _session_folders(output):
        shutil.rmtree(folder)
    os.remove(os.path.join(output, MARKER_NAME))
    return None


def synthesize_corpus(output, utterances_per_speaker=150, seed=1234):
    """Writes the synthetic corpus in the IEMOCAP_full_release layout.

    An existing corpus made with the same parameters (per the
    ``demo_corpus.json`` marker) is reused; one made with other parameters
    is deleted (only its ``Session*`` folders and marker) and re-made. A
    non-empty folder without a marker is never touched.

    With the defaults: 1,500 utterances, of which neu 440, hap 150,
    exc 270, ang 280, sad 280 (4-class set: neu 440, hap+exc 420, ang 280,
    sad 280 = 1,420) and 80 dropped (fru 30, sur 20, xxx 30).

    Arguments
    ---------
    output : str
        Folder to write (created when missing); it will hold
        ``Session1`` ... ``Session5`` and the marker.
    utterances_per_speaker : int
        Utterances of each of the 10 speakers.
    seed : int
        Random seed; the same parameters give byte-identical files.

    Returns
    -------
    dict
        ``output``, ``reused`` (bool) and the counts: ``num_utterances``,
        ``num_wav_files``, ``num_dialogs``, ``per_emotion`` (codes),
        ``four_class`` (exc merged into hap), ``num_four_class``,
        ``num_dropped``, ``per_session``, ``total_duration_s``.

    Example
    -------
    >>> import tempfile
    >>> root = os.path.join(tempfile.mkdtemp(), "corpus")
    >>> summary = synthesize_corpus(root, utterances_per_speaker=2)
    >>> summary["num_utterances"], summary["num_wav_files"]
    (20, 20)
    >>> synthesize_corpus(root, utterances_per_speaker=2)["reused"]
    True
    >>> shutil.rmtree(os.path.dirname(root))
    """
    _import_espeakng_loader()  # fail early, before any file is written
    utterances_per_speaker, seed = int(utterances_per_speaker), int(seed)
    if utterances_per_speaker < 1:
        raise ValueError("utterances_per_speaker must be at least 1")
    output = os.fspath(output)
    parameters = {
        "utterances_per_speaker": utterances_per_speaker,
        "seed": seed,
        "fingerprint": corpus_fingerprint(),
    }
    stored = _prepare_output(output, parameters)
    if stored is not None:
        logger.info(
            "Demo corpus in %s matches the parameters, reusing it "
            "(%d utterances).",
            output,
            stored["num_utterances"],
        )
        return {"output": output, "reused": True, **stored}

    began = time.time()
    os.makedirs(output, exist_ok=True)
    # A fixed name, not __name__ (which is "__main__" from the CLI), so that
    # the marker is byte-identical however the corpus was made.
    marker = {
        "generator": "speechbrain_turbo.demo_corpus",
        "parameters": parameters,
    }
    _write_marker(output, {**marker, "complete": False})
    dialogs = plan_corpus(utterances_per_speaker, seed)
    # One job list per speaker, rendered in plan order (see _render_chunk).
    chunks = {(row[0], row[1]): [] for row in SPEAKERS}
    for dialog in dialogs:
        wav_dir = os.path.join(
            output, f"Session{dialog.session}", "sentences", "wav", dialog.name
        )
        os.makedirs(wav_dir, exist_ok=True)
        for spec in dialog.utterances:
            path = os.path.join(wav_dir, f"{spec.utt_id}.wav")
            chunks[(spec.session, spec.gender)].append((spec, path))
    lengths = {}
    for jobs in chunks.values():
        lengths.update(_render_chunk(jobs))
    for dialog in dialogs:
        _write_dialog_texts(output, dialog, lengths)
    summary = _summarize(dialogs, lengths)
    _write_marker(output, {**marker, "complete": True, "summary": summary})
    logger.info(
        "Demo corpus written to %s in %.1f s: %d utterances (%.1f min), "
        "per emotion %s, 4-class %s, per session %s.",
        output,
        time.time() - began,
        summary["num_utterances"],
        summary["total_duration_s"] / 60.0,
        summary["per_emotion"],
        summary["four_class"],
        summary["per_session"],
    )
    return {"output": output, "reused": False, **summary}


def main(argv=None):
    """Command line: synthesise the demo corpus.

    Arguments
    ---------
    argv : list of str or None
        Arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    dict
        The summary of ``synthesize_corpus``.

    Example
    -------
    >>> main(["--help"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(
        description="Synthesise the demo emotional speech corpus in the "
        "IEMOCAP_full_release layout."
    )
    parser.add_argument("--output", required=True, help="corpus folder")
    parser.add_argument(
        "--utterances-per-speaker",
        type=int,
        default=150,
        help="utterances of each of the 10 speakers (default: 150)",
    )
    parser.add_argument(
        "--seed", type=int, default=1234, help="random seed (default: 1234)"
    )
    args = parser.parse_args(argv)
    summary = synthesize_corpus(
        args.output,
        utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed,
    )
    logger.info("Summary: %s", json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
