"""Data preparation for the Berlin Database of Emotional Speech (EmoDB).

EmoDB: 10 actors (5 female, 5 male) read 10 German sentences in 7
emotions; 535 utterances. Every file in ``<data_folder>/wav`` is named
``SSTTTEV.wav``: speaker ``SS``, text code ``TTT``, emotion letter ``E``
(German initial) and version ``V``, e.g. ``03a01Fa.wav``. The transcript is
the sentence of the text code; the label is the emotion.

The split is speaker-independent, by pairs of one male and one female
actor (as an IEMOCAP session): five folds, one pair for test, the next pair
(cyclically) for validation, the other three for training. The options are
stored next to the manifests, and changing them re-creates the split.

Manifests are CSV files with the columns ``ID,wav,text,label,speaker,
duration``, wav paths starting with ``$data_root``: the generic recipe's
(recipes/AudioText/turbo, its ``data_folder`` replaces ``$data_root``).
Every fold at once, ``<save_folder>/fold<k>/{train,valid,test}.csv``:

    > python emodb_prepare.py /path/to/EmoDB results/EmoDB_folds

Authors
 * speechbrain-turbo contributors
"""

import argparse
import os
import re

from speechbrain.dataio.audio_io import info as audio_info
from speechbrain.utils.logger import get_logger, setup_logging

from speechbrain_turbo.errors import (
    InputError,
    MissingInputError,
    reported_input_errors,
)
from speechbrain_turbo.preparation import (
    SPLITS,
    reusable_split_manifests,
    write_split_manifests,
)

logger = get_logger(__name__)

# Bump when the manifests' content changes, so old ones are re-created.
PREP_VERSION = 1
OPT_FILE = "prepare_emodb.json"
COLUMNS = ("ID", "wav", "text", "label", "speaker", "duration")
# German initial of the emotion -> label.
EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
# The sentences of the corpus, by text code.
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": (
        "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück."
    ),
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": (
        "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter."
    ),
    "b03": (
        "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe "
        "Agnes besucht."
    ),
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# Speaker pairs (male, female) of the five folds.
FOLDS = {
    1: ("03", "08"),
    2: ("10", "09"),
    3: ("11", "13"),
    4: ("12", "14"),
    5: ("15", "16"),
}
_NAME_RE = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])\.wav$")


def prepare_emodb(
    data_folder, save_folder, test_fold=4, valid_fold=None, skip_prep=False
):
    """Writes ``train.csv``, ``valid.csv`` and ``test.csv`` for EmoDB.

    Arguments
    ---------
    data_folder : str
        The EmoDB folder, holding ``wav/``.
    save_folder : str
        Where the manifests and the options file ``prepare_emodb.json`` go.
    test_fold : int
        The speaker pair (1-5, see ``FOLDS``) held out for test.
    valid_fold : int, optional
        The pair used for validation; default: the next one (5 -> 1).
    skip_prep : bool
        If True, do nothing and return None.

    Returns
    -------
    summary : dict or None
        ``counts`` ({split: {label: int}}), ``speakers`` ({split: [str]}),
        ``ignored`` (file names in ``wav/`` that do not follow the naming
        scheme) and ``reused`` (True when the existing manifests matched).

    Example
    -------
    >>> summary = prepare_emodb("EmoDB", "prep")  # doctest: +SKIP
    >>> counts = summary["counts"].values()  # doctest: +SKIP
    >>> sum(sum(c.values()) for c in counts)  # doctest: +SKIP
    535
    """
    if skip_prep:
        return None
    test_fold, valid_fold = check_folds(test_fold, valid_fold)
    options = {
        "format_version": PREP_VERSION,
        "data_folder": os.path.abspath(data_folder),
        "test_fold": test_fold,
        "valid_fold": valid_fold,
    }
    summary = reusable_split_manifests(save_folder, OPT_FILE, options, "EmoDB")
    if summary is not None:
        return summary

    entries, ignored = read_corpus(data_folder)
    speakers = {
        "test": sorted(FOLDS[test_fold]),
        "valid": sorted(FOLDS[valid_fold]),
    }
    speakers["train"] = sorted(
        s
        for fold, pair in FOLDS.items()
        if fold not in (test_fold, valid_fold)
        for s in pair
    )
    splits = {
        split: [e for e in entries if e["speaker"] in speakers[split]]
        for split in SPLITS
    }
    summary = write_split_manifests(
        save_folder,
        OPT_FILE,
        options,
        splits,
        COLUMNS,
        {"speakers": speakers, "ignored": ignored},
    )
    for split in SPLITS:
        logger.info(
            "EmoDB %s (speakers %s): %d utterances %s.",
            split,
            speakers[split],
            len(splits[split]),
            summary["counts"][split],
        )
    return {**summary, "reused": False}


def prepare_emodb_folds(data_folder, save_folder):
    """Writes the manifests of every fold, ``<save_folder>/fold<k>/``.

    Fold ``k`` tests on pair ``k`` and validates on the next pair; each
    fold's folder is what :func:`prepare_emodb` writes (and reuses).

    Arguments
    ---------
    data_folder : str
        The EmoDB folder, holding ``wav/``.
    save_folder : str
        Where the fold folders go.

    Returns
    -------
    dict
        ``{fold: summary}``, as :func:`prepare_emodb` returns them.

    Example
    -------
    >>> folds = prepare_emodb_folds("EmoDB", "folds")  # doctest: +SKIP
    >>> sorted(folds)  # doctest: +SKIP
    [1, 2, 3, 4, 5]
    """
    return {
        fold: prepare_emodb(
            data_folder, os.path.join(save_folder, f"fold{fold}"), fold
        )
        for fold in FOLDS
    }


def check_folds(test_fold, valid_fold):
    """Checks the fold numbers; returns them as ints (valid filled in).

    Arguments
    ---------
    test_fold : int
        The test pair, 1-5.
    valid_fold : int or None
        The validation pair, 1-5 and not ``test_fold``; None: the next.

    Returns
    -------
    test_fold, valid_fold : int

    Example
    -------
    >>> check_folds(5, None)
    (5, 1)
    """
    if test_fold not in FOLDS:
        raise InputError(
            f"test_fold must be one of {list(FOLDS)}, not {test_fold!r}"
        )
    if valid_fold is None:
        valid_fold = test_fold % len(FOLDS) + 1
    if valid_fold not in FOLDS or valid_fold == test_fold:
        raise InputError(
            f"valid_fold must be one of {list(FOLDS)} other than test_fold "
            f"{test_fold}, not {valid_fold!r}"
        )
    return int(test_fold), int(valid_fold)


def read_corpus(data_folder):
    """Lists the corpus' utterances from the file names in ``wav/``.

    Arguments
    ---------
    data_folder : str
        The EmoDB folder, holding ``wav/``.

    Returns
    -------
    entries : list of dict
        One manifest row per utterance, sorted by ID.
    ignored : list of str
        Files in ``wav/`` that are not utterances of the naming scheme
        (logged with their count).

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain.dataio import audio_io
    >>> folder = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(folder, "wav"))
    >>> path = os.path.join(folder, "wav", "03a01Wa.wav")
    >>> audio_io.save(path, torch.zeros(1, 1600), 16000)
    >>> entries, ignored = read_corpus(folder)
    >>> entries[0]["label"], entries[0]["text"], entries[0]["duration"]
    ('anger', 'Der Lappen liegt auf dem Eisschrank.', 0.1)
    """
    wav_folder = os.path.join(data_folder, "wav")
    if not os.path.isdir(wav_folder):
        raise MissingInputError(
            f"{wav_folder} does not exist: data_folder must be the EmoDB "
            "folder holding wav/ (files named like 03a01Fa.wav)"
        )
    speakers = {s for pair in FOLDS.values() for s in pair}
    entries, ignored = [], []
    for name in sorted(os.listdir(wav_folder)):
        match = _NAME_RE.match(name)
        if match is None:
            ignored.append(name)
            continue
        speaker, text_code, emotion, _ = match.groups()
        path = os.path.join(wav_folder, name)
        where = (
            f"{path} (speaker {speaker}, text {text_code}, emotion {emotion})"
        )
        if speaker not in speakers:
            raise InputError(
                f"{where}: unknown speaker; EmoDB's are {sorted(speakers)}"
            )
        if text_code not in SENTENCES:
            raise InputError(
                f"{where}: unknown text code; EmoDB's are {sorted(SENTENCES)}"
            )
        if emotion not in EMOTIONS:
            raise InputError(
                f"{where}: unknown emotion letter; "
                f"EmoDB's are {sorted(EMOTIONS)}"
            )
        try:
            meta = audio_info(path)
            duration = round(meta.num_frames / meta.sample_rate, 3)
        except Exception as err:  # the screening reports the file again
            logger.warning(
                "Cannot read %s (%s): duration left empty.", path, err
            )
            duration = ""
        entries.append(
            {
                "ID": name[: -len(".wav")],
                "wav": f"$data_root/wav/{name}",
                "text": SENTENCES[text_code],
                "label": EMOTIONS[emotion],
                "speaker": speaker,
                "duration": duration,
            }
        )
    if ignored:
        logger.warning(
            "EmoDB: ignored %d files in %s that are not named like "
            "03a01Fa.wav: %s",
            len(ignored),
            wav_folder,
            ignored[:10],
        )
    if not entries:
        raise MissingInputError(
            f"No EmoDB utterances (files named like 03a01Fa.wav) in "
            f"{wav_folder}"
        )
    return entries, ignored


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Writes EmoDB's five speaker-independent folds as the "
        "generic recipe's manifests (recipes/AudioText/turbo)."
    )
    parser.add_argument("data_folder", help="the EmoDB folder, holding wav/")
    parser.add_argument("save_folder", help="where fold1..fold5 go")
    args = parser.parse_args()
    setup_logging()
    with reported_input_errors():
        prepare_emodb_folds(args.data_folder, args.save_folder)
