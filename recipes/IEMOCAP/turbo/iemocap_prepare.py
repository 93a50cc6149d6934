"""Data preparation for IEMOCAP 4-class emotion recognition (audio + text).

Reads the ``IEMOCAP_full_release`` folder (the one holding ``Session1`` ..
``Session5``) and writes SpeechBrain JSON manifests ``train.json``,
``valid.json`` and ``test.json`` for leave-one-session-out experiments.
Each entry holds the wav path (with a ``{data_root}`` placeholder), its
duration, the gold transcript, the emotion and the speaker.

The standard 4-class set is kept: neutral, happy (with excited merged into
it), angry and sad. On the real corpus this gives 5,531 utterances
(neu 1708, hap 595 + exc 1041 = 1636, ang 1103, sad 1084). Utterances with
any other label are dropped, counted per code and logged.

Unlike upstream SpeechBrain's IEMOCAP preparation, the options used are
stored next to the manifests and compared on every call, so changing the
test or validation session re-creates the split instead of silently
reusing the old one.

Authors
 * speechbrain-turbo contributors
"""

import os
import random
import re
from collections import Counter, defaultdict
from numbers import Integral, Real

from speechbrain.dataio.audio_io import info as audio_info
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.errors import InputError, MissingInputError
from speechbrain_turbo.preparation import (
    SPLITS,
    forget_summary,
    load_matching_summary,
    write_json,
    write_summary,
)

logger = get_logger(__name__)

# Bump when the manifest content or layout changes, so that manifests
# written by an older version are re-created rather than reused.
PREP_VERSION = 2
OPT_FILE = "prepare_iemocap.json"
SESSIONS = (1, 2, 3, 4, 5)
EMOTIONS = ("neu", "hap", "ang", "sad")
# Label code -> class; codes absent from this map are dropped and counted.
EMO_MAP = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}

# Summary line of an EmoEvaluation file, e.g.
# "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]".
# Header ("%") and annotator ("C-E1:", "A-E2:", ...) lines do not match.
_LABEL_RE = re.compile(r"^\[[^\]]*\]\t(\S+)\t(\S+)\t\[")
# Transcript line, e.g. "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_TRANS_RE = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")
_LAYOUT_HELP = (
    "data_folder must be the IEMOCAP_full_release folder, i.e. the one "
    "holding Session1 ... Session5, each with "
    "dialog/EmoEvaluation/<dialog>.txt, dialog/transcriptions/<dialog>.txt "
    "and sentences/wav/<dialog>/<utterance>.wav"
)


def prepare_iemocap(
    data_folder,
    save_folder,
    test_session=5,
    valid_split=None,
    seed=1234,
    skip_prep=False,
):
    """Writes train/valid/test JSON manifests for IEMOCAP 4-class emotion.

    The real corpus has 5,531 utterances in the 4-class set
    (neu 1708, hap + exc 1636, ang 1103, sad 1084).

    Arguments
    ---------
    data_folder : str
        Path to ``IEMOCAP_full_release`` (the folder holding Session1..5).
    save_folder : str
        Where ``train.json``, ``valid.json``, ``test.json`` and the options
        file ``prepare_iemocap.json`` are written.
    test_session : int
        Session (1-5) used as the test set (leave-one-session-out).
    valid_split : None, int or float
        None: the session after ``test_session``, cyclically (5 -> 1).
        int in 1-5, other than ``test_session``: that session.
        float in (0, 1): that fraction of each training speaker's
        utterances, drawn at random with ``seed``.
    seed : int
        Seed of the random draw when ``valid_split`` is a float.
    skip_prep : bool
        If True, do nothing and return None.

    Returns
    -------
    summary : dict or None
        None if ``skip_prep``. Otherwise a dict with keys
        ``counts`` ({split: {emotion: int}}), ``totals`` ({split: int}),
        ``sessions`` ({split: [int, ...]}), ``kept_codes`` ({code: int},
        before merging exc into hap), ``dropped`` ({code: int}),
        ``ignored_transcript_lines`` (int) and ``reused`` (True when the
        existing manifests matched the options and were kept).

    Example
    -------
    >>> summary = prepare_iemocap(
    ...     "IEMOCAP_full_release", "results/prep", test_session=5
    ... )  # doctest: +SKIP
    >>> sum(summary["totals"].values())  # doctest: +SKIP
    5531
    """
    if skip_prep:
        return None
    check_arguments(test_session, valid_split, seed)

    options = {
        "format_version": PREP_VERSION,
        "data_folder": os.path.abspath(data_folder),
        "test_session": int(test_session),
        # Plain int/float so that numpy scalars compare and serialise.
        "valid_split": (
            valid_split
            if valid_split is None
            else (int if _is_int(valid_split) else float)(valid_split)
        ),
        "seed": int(seed),
    }
    stored = load_matching_summary(
        save_folder, OPT_FILE, options, [f"{name}.json" for name in SPLITS]
    )
    if stored is not None:
        logger.info(
            "IEMOCAP manifests in %s match the options, reusing them.",
            save_folder,
        )
        stored["reused"] = True
        return stored

    sessions = plan_sessions(data_folder, test_session, valid_split)
    logger.info(
        "Preparing IEMOCAP: test session %s, validation %s, "
        "training sessions %s.",
        sessions["test"],
        (
            f"session {sessions['valid']}"
            if sessions["valid"]
            else f"{valid_split:g} of the training utterances"
        ),
        sessions["train"],
    )

    used = sorted(set(sessions["train"] + sessions["valid"] + sessions["test"]))
    data = {}
    dropped = Counter()
    kept_codes = Counter()
    ignored = 0
    for session in used:
        entries, s_dropped, s_kept, s_ignored = read_session(
            data_folder, session
        )
        data[session] = entries
        dropped.update(s_dropped)
        kept_codes.update(s_kept)
        ignored += s_ignored

    splits = {name: {} for name in SPLITS}
    for name in SPLITS:
        for session in sessions[name]:
            splits[name].update(data[session])
    if not sessions["valid"]:
        splits["train"], splits["valid"] = split_by_fraction(
            splits["train"], valid_split, seed
        )
        sessions["valid"] = list(sessions["train"])

    summary = {
        "counts": {
            name: count_emotions(splits[name].values()) for name in SPLITS
        },
        "totals": {name: len(splits[name]) for name in SPLITS},
        "sessions": sessions,
        "kept_codes": dict(sorted(kept_codes.items())),
        "dropped": dict(sorted(dropped.items())),
        "ignored_transcript_lines": ignored,
    }

    os.makedirs(save_folder, exist_ok=True)
    # Remove the old options first: if writing is interrupted, the next
    # call must not reuse a half-written set of manifests.
    forget_summary(save_folder, OPT_FILE)
    for name in SPLITS:
        write_json(splits[name], os.path.join(save_folder, f"{name}.json"))
    write_summary(save_folder, OPT_FILE, options, summary)

    log_summary(summary)
    summary["reused"] = False
    return summary


def check_arguments(test_session, valid_split, seed):
    """Raises InputError if the split arguments are not valid.

    Arguments
    ---------
    test_session : int
        Must be an int in 1-5.
    valid_split : None, int or float
        None, an int in 1-5 other than ``test_session``, or a float in
        the open interval (0, 1).
    seed : int
        Must be an int.

    Returns
    -------
    None

    Example
    -------
    >>> check_arguments(5, None, 1234)
    >>> check_arguments(5, 0.1, 1234)
    >>> check_arguments(5, 5, 1234)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_turbo.errors.InputError: valid_split=5 is the test session; ...
    """
    if not _is_int(test_session) or test_session not in SESSIONS:
        raise InputError(
            f"test_session must be an int in 1-5, got {test_session!r}."
        )
    if not _is_int(seed):
        raise InputError(f"seed must be an int, got {seed!r}.")
    if valid_split is None:
        return
    if not (_is_int(valid_split) or _is_float(valid_split)):
        raise InputError(
            "valid_split must be None, a session number (int in 1-5) or a "
            f"fraction (float in (0, 1)), got {valid_split!r}."
        )
    if _is_int(valid_split):
        if valid_split not in SESSIONS:
            raise InputError(
                f"valid_split={valid_split!r} is not a session: use an int "
                "in 1-5, a float in (0, 1), or None."
            )
        if valid_split == test_session:
            raise InputError(
                f"valid_split={valid_split!r} is the test session; "
                "validation must come from another session."
            )
    elif not 0.0 < valid_split < 1.0:
        raise InputError(
            f"valid_split={valid_split!r}: a fraction must be in (0, 1); "
            "for a whole session pass an int in 1-5."
        )


def _is_int(value):
    """Tells whether a value is an integer, excluding bool.

    Arguments
    ---------
    value : object
        Any value.

    Returns
    -------
    bool
        True for int-like values (numpy ints included), False for bool.

    Example
    -------
    >>> _is_int(3), _is_int(True), _is_int(0.5)
    (True, False, False)
    """
    # bool is an Integral in Python; True/False here is always a mistake.
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_float(value):
    """Tells whether a value is a real, non-integer number (float-like).

    Arguments
    ---------
    value : object
        Any value.

    Returns
    -------
    bool
        True for float-like values, False for ints, bools and others.

    Example
    -------
    >>> _is_float(0.5), _is_float(1), _is_float("0.5")
    (True, False, False)
    """
    return isinstance(value, Real) and not isinstance(value, Integral)


def plan_sessions(data_folder, test_session, valid_split):
    """Decides which sessions go to train, valid and test.

    Arguments
    ---------
    data_folder : str
        Path to ``IEMOCAP_full_release``.
    test_session : int
        The test session (1-5).
    valid_split : None, int or float
        As in ``prepare_iemocap``; for a float, ``valid`` is empty and the
        validation set is drawn from the training sessions later.

    Returns
    -------
    sessions : dict
        {"train": [int, ...], "valid": [int] or [], "test": [int]}.

    Example
    -------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> for k in (1, 2, 5):
    ...     os.makedirs(os.path.join(root, f"Session{k}"))
    >>> plan_sessions(root, 5, None)
    {'train': [2], 'valid': [1], 'test': [5]}
    >>> plan_sessions(root, 5, 0.1)
    {'train': [1, 2], 'valid': [], 'test': [5]}
    """
    if not os.path.isdir(data_folder):
        raise MissingInputError(
            f"IEMOCAP data_folder {data_folder!r} does not exist. "
            + _LAYOUT_HELP
        )
    present = [
        k
        for k in SESSIONS
        if os.path.isdir(os.path.join(data_folder, f"Session{k}"))
    ]
    if not present:
        raise MissingInputError(
            f"No Session1..Session5 folder in {data_folder!r}. " + _LAYOUT_HELP
        )
    if _is_int(valid_split):
        valid = [int(valid_split)]
    elif valid_split is None:
        valid = [test_session % 5 + 1]
    else:
        valid = []
    for role, k in [("test", test_session)] + [
        ("validation", v) for v in valid
    ]:
        if k not in present:
            raise MissingInputError(
                f"The {role} session folder "
                f"{os.path.join(data_folder, f'Session{k}')!r} is missing "
                f"(found sessions {present}). Choose test_session / "
                "valid_split among the sessions present, or restore it. "
                + _LAYOUT_HELP
            )
    train = [k for k in present if k != test_session and k not in valid]
    if not train:
        raise MissingInputError(
            f"No training session left in {data_folder!r} (found sessions "
            f"{present}, test {test_session}, validation {valid})."
        )
    missing = [k for k in SESSIONS if k not in present]
    if missing:
        logger.warning(
            "IEMOCAP sessions %s are missing from %s; training on %s only.",
            missing,
            data_folder,
            train,
        )
    return {"train": train, "valid": valid, "test": [int(test_session)]}


def read_session(data_folder, session):
    """Reads labels, transcripts and wav durations of one session.

    Arguments
    ---------
    data_folder : str
        Path to ``IEMOCAP_full_release``.
    session : int
        Session number (1-5).

    Returns
    -------
    entries : dict
        {utt_id: manifest entry} for the kept (4-class) utterances.
    dropped : collections.Counter
        Number of dropped utterances per label code.
    kept_codes : collections.Counter
        Number of kept utterances per label code (exc counted apart).
    ignored : int
        Transcript lines that are not labelled utterances (skipped).

    Example
    -------
    >>> entries, dropped, kept, ignored = read_session(
    ...     "IEMOCAP_full_release", 1
    ... )  # doctest: +SKIP
    """
    sess_dir = os.path.join(data_folder, f"Session{session}")
    label_dir = os.path.join(sess_dir, "dialog", "EmoEvaluation")
    trans_dir = os.path.join(sess_dir, "dialog", "transcriptions")
    if not os.path.isdir(label_dir):
        raise MissingInputError(
            f"Label folder {label_dir!r} is missing. " + _LAYOUT_HELP
        )
    # Only the plain per-dialog files; the Categorical/, Attribute/ and
    # Self-evaluation/ sub-folders hold per-annotator details. Names
    # starting with "." are macOS metadata found in some copies.
    label_files = sorted(
        name
        for name in os.listdir(label_dir)
        if name.endswith(".txt")
        and not name.startswith(".")
        and os.path.isfile(os.path.join(label_dir, name))
    )
    if not label_files:
        raise MissingInputError(
            f"No label file (<dialog>.txt) in {label_dir!r}. " + _LAYOUT_HELP
        )

    entries = {}
    dropped = Counter()
    kept_codes = Counter()
    ignored = 0
    for name in label_files:
        dialog = name[: -len(".txt")]
        label_path = os.path.join(label_dir, name)
        trans_path = os.path.join(trans_dir, name)
        labels = read_labels(label_path)
        if not os.path.isfile(trans_path):
            raise MissingInputError(
                f"Transcription file {trans_path!r} is missing for the "
                f"labels in {label_path!r}. " + _LAYOUT_HELP
            )
        texts, n_other, not_utf8 = read_transcripts(trans_path)
        ignored += n_other + sum(1 for utt in texts if utt not in labels)

        for utt, code in labels.items():
            if utt in entries:
                raise InputError(
                    f"Utterance {utt} is labelled twice in session "
                    f"{session} (again in {label_path!r})."
                )
            emo = EMO_MAP.get(code)
            if emo is None:
                dropped[code] += 1
                continue
            kept_codes[code] += 1
            wav_rel = f"Session{session}/sentences/wav/{dialog}/{utt}.wav"
            wav_path = os.path.join(data_folder, *wav_rel.split("/"))
            # A missing or broken wav, a missing transcript line and a
            # non-UTF-8 one go into the manifest as they are: the data
            # loading screens them under the recipe's on_bad_input policy.
            entries[utt] = {
                "wav": "{data_root}/" + wav_rel,
                "duration": _duration_or_none(wav_path),
                "text": texts.get(utt),
                "emo": emo,
                "speaker": speaker_of(utt, session),
                "session": session,
            }
            if utt not in texts:
                entries[utt]["transcript_file"] = trans_path
            if utt in not_utf8:
                entries[utt]["_not_utf8"] = True
    return entries, dropped, kept_codes, ignored


def read_labels(label_path):
    r"""Reads the utterance-level labels of one EmoEvaluation file.

    Arguments
    ---------
    label_path : str
        Path to ``Session{k}/dialog/EmoEvaluation/<dialog>.txt``.

    Returns
    -------
    labels : dict
        {utt_id: label code}, e.g. {"Ses01F_impro01_F000": "neu"}.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "Ses01F_impro01.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write(
    ...         "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    ...         "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t"
    ...         "[2.5000, 2.5000, 2.5000]\n"
    ...         "C-E2:\tNeutral;\t()\n"
    ...     )
    >>> read_labels(path)
    {'Ses01F_impro01_F000': 'neu'}
    """
    labels = {}
    with open(label_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parsed = parse_label_line(line)
            if parsed is None:
                continue
            utt, code = parsed
            if utt in labels:
                raise InputError(
                    f"Utterance {utt} has two summary lines in "
                    f"{label_path!r}; the file looks corrupt."
                )
            labels[utt] = code
    return labels


def parse_label_line(line):
    r"""Parses an EmoEvaluation summary line; other lines give None.

    Arguments
    ---------
    line : str
        One line of an EmoEvaluation file.

    Returns
    -------
    parsed : tuple or None
        (utt_id, label code), or None for header, blank and annotator
        lines.

    Example
    -------
    >>> parse_label_line(
    ...     "[6.2901 - 8.2357]\tSes01F_impro01_F000\texc\t[2.5, 3.5, 3.0]"
    ... )
    ('Ses01F_impro01_F000', 'exc')
    >>> parse_label_line("C-E1:\tNeutral;\t()") is None
    True
    """
    match = _LABEL_RE.match(line.strip("\r\n"))
    if match is None:
        return None
    return match.group(1), match.group(2)


def read_transcripts(trans_path):
    r"""Reads one transcription file.

    Arguments
    ---------
    trans_path : str
        Path to ``Session{k}/dialog/transcriptions/<dialog>.txt``.

    Returns
    -------
    texts : dict
        {utt_id: text} for every line in the utterance format (this may
        include ids with no wav or label, which callers ignore).
    n_other : int
        Non-blank lines that are not in the utterance format.
    not_utf8 : set
        Utterances whose line is not valid UTF-8 (their text is decoded
        with replacement characters).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "Ses01F_impro01.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write(
    ...         "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
    ...         "M: [BREATHING]\n"
    ...     )
    >>> read_transcripts(path)
    ({'Ses01F_impro01_F000': 'Excuse me.'}, 1, set())
    """
    texts = {}
    n_other = 0
    not_utf8 = set()
    with open(trans_path, "rb") as f:
        for raw in f:
            try:
                line, valid = raw.decode("utf-8").strip(), True
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="replace").strip()
                valid = False
            if not line:
                continue
            match = _TRANS_RE.match(line)
            if match is None:
                n_other += 1
                continue
            utt, text = match.group(1), match.group(2).strip()
            if utt in texts:
                raise InputError(
                    f"Utterance {utt} has two lines in the transcription "
                    f"file {trans_path!r}; the file looks corrupt."
                )
            texts[utt] = text
            if not valid:
                not_utf8.add(utt)
    return texts, n_other, not_utf8


def _duration_or_none(wav_path):
    """Duration in seconds, or None for a missing or unreadable file."""
    try:
        return audio_info(wav_path).duration
    except Exception:  # libsndfile and the OS raise various errors
        return None


def speaker_of(utt_id, session):
    """Returns the speaker of an utterance, e.g. "Ses01M".

    The dialog name carries the gender of the speaker who wore the
    markers, not of the one talking: the talker's gender is the first
    letter of the utterance id's last field.

    Arguments
    ---------
    utt_id : str
        Utterance id, e.g. "Ses01F_impro01_M000".
    session : int
        Session number (1-5).

    Returns
    -------
    speaker : str
        "Ses0{session}" followed by "F" or "M".

    Example
    -------
    >>> speaker_of("Ses01F_impro01_M000", 1)
    'Ses01M'
    >>> speaker_of("Ses02F_script01_1_F012", 2)
    'Ses02F'
    """
    gender = utt_id.rsplit("_", 1)[-1][:1]
    if gender not in ("F", "M"):
        raise InputError(
            f"Cannot tell the speaker of utterance {utt_id!r}: its last "
            "field should start with F or M (e.g. Ses01F_impro01_M000)."
        )
    return f"Ses{session:02d}{gender}"


def split_by_fraction(entries, fraction, seed):
    """Draws a random fraction of each speaker's utterances for validation.

    Arguments
    ---------
    entries : dict
        {utt_id: entry} with a "speaker" field in each entry.
    fraction : float
        Share of each speaker's utterances that goes to validation.
    seed : int
        Seed of the random draw (same seed, same split).

    Returns
    -------
    train : dict
        The entries not drawn.
    valid : dict
        The entries drawn: round(fraction * n) per speaker.

    Example
    -------
    >>> entries = {
    ...     f"Ses01{g}_impro01_{g}00{i}": {"speaker": f"Ses01{g}"}
    ...     for g in "FM"
    ...     for i in range(4)
    ... }
    >>> train, valid = split_by_fraction(entries, 0.5, 1234)
    >>> len(train), len(valid)
    (4, 4)
    >>> sorted(e["speaker"] for e in valid.values())
    ['Ses01F', 'Ses01F', 'Ses01M', 'Ses01M']
    """
    by_speaker = defaultdict(list)
    for utt in sorted(entries):
        by_speaker[entries[utt]["speaker"]].append(utt)
    # A private generator: the draw depends only on seed and data.
    rng = random.Random(seed)
    chosen = set()
    for speaker in sorted(by_speaker):
        utts = by_speaker[speaker]
        chosen.update(rng.sample(utts, round(fraction * len(utts))))
    train = {u: e for u, e in entries.items() if u not in chosen}
    valid = {u: e for u, e in entries.items() if u in chosen}
    return train, valid


def count_emotions(entries):
    """Counts manifest entries per emotion class.

    Arguments
    ---------
    entries : iterable of dict
        Manifest entries with an "emo" field.

    Returns
    -------
    counts : dict
        {emotion: int} for each of neu, hap, ang, sad (zeros included).

    Example
    -------
    >>> count_emotions([{"emo": "hap"}, {"emo": "sad"}, {"emo": "hap"}])
    {'neu': 0, 'hap': 2, 'ang': 0, 'sad': 1}
    """
    counts = dict.fromkeys(EMOTIONS, 0)
    for entry in entries:
        counts[entry["emo"]] += 1
    return counts


def log_summary(summary):
    """Logs counts per split and class, dropped codes and ignored lines.

    Arguments
    ---------
    summary : dict
        As returned by ``prepare_iemocap``.

    Returns
    -------
    None

    Example
    -------
    >>> log_summary(
    ...     {
    ...         "counts": {s: count_emotions([]) for s in SPLITS},
    ...         "totals": dict.fromkeys(SPLITS, 0),
    ...         "sessions": {"train": [], "valid": [], "test": [5]},
    ...         "kept_codes": {},
    ...         "dropped": {"fru": 3},
    ...         "ignored_transcript_lines": 2,
    ...     }
    ... )
    """
    for name in SPLITS:
        per_emo = ", ".join(
            f"{emo} {n}" for emo, n in summary["counts"][name].items()
        )
        logger.info(
            "IEMOCAP %s (sessions %s): %d utterances (%s).",
            name,
            summary["sessions"][name],
            summary["totals"][name],
            per_emo,
        )
    logger.info(
        "IEMOCAP kept label codes (exc merged into hap): %s.",
        summary["kept_codes"],
    )
    logger.info(
        "IEMOCAP dropped %d utterances outside the 4 classes: %s.",
        sum(summary["dropped"].values()),
        summary["dropped"],
    )
    logger.info(
        "IEMOCAP ignored %d transcript lines that are not labelled utterances.",
        summary["ignored_transcript_lines"],
    )
