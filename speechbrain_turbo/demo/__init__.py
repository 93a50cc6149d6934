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
cue rates) are in ``settings.py``, the word material in
``text_material.json``. They are part of
the corpus fingerprint stored in the ``demo_corpus.json`` marker, so
retuning them re-synthesises an existing corpus rather than reusing it.

Output is deterministic: the same parameters give byte-identical files.
espeak-ng keeps waveform state (phase counters) in global variables across
utterances, so each speaker is rendered, always in the same order, by its
own private copy of the library (fresh globals). Rendering is serial: it
takes about 8 s for the default 1,500 utterances.

Example command line (1,500 utterances, about 75 min of audio)::

    python -m speechbrain_turbo.demo --output results/demo/corpus

The package: ``espeak`` (the espeak-ng binding), ``text`` (sentences from
``text_material.json``), ``plan`` (the corpus plan), ``audio`` (rendering),
``layout`` (IEMOCAP's text files) and ``corpus`` (:func:`synthesize_corpus`).

Authors
 * speechbrain-turbo contributors
"""

from speechbrain_turbo.demo.corpus import main, synthesize_corpus

__all__ = ["main", "synthesize_corpus"]
