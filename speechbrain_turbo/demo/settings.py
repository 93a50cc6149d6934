"""The demo corpus' tuning tables: speakers, emotion shares and prosody,
recording conditions, text cue rates, dialog structure and the IEMOCAP
annotation vocabulary. They are part of the corpus fingerprint stored in
its marker, so retuning them re-synthesises an existing corpus.

Authors
 * speechbrain-turbo contributors
"""


# Tuning tables
# ---------------------------------------------------------------------------

# Bump when the generator changes in a way the tables below do not show.
CORPUS_VERSION = 2
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
