"""Data preparation for MUStARD (sarcasm detection in TV dialogue).

MUStARD (Castro et al., 2019): 690 utterances from TV series (Friends, The
Big Bang Theory, The Golden Girls, Sarcasmaholics), each with its speaker,
its show, the preceding lines of the scene (the context) and a label:
sarcastic or not. The labels and texts come from the authors' repository
(``data/sarcasm_data.json``); the audio of a balanced subset of 210 of them
(105 sarcastic) from a second public repository (``audio_data/<key>.wav``,
44.1 kHz stereo). Only utterances with both are used.

The audio is converted once to 16 kHz mono (``converted_folder``, shared by
every run). The text is the utterance, optionally after the last
``context_lines`` lines of its context. Three splits, each as five folds
where ``test_fold`` is the test set and the next fold (cyclically) the
validation set used for model selection:

- ``stratified``: folds of equal size and label balance (speakers shared
  between training and test: the speaker-dependent setting);
- ``speaker``: speaker-disjoint folds (every speaker's utterances in one
  fold, folds balanced greedily by size);
- ``show``: two folds, the test set is one show (1: Friends, 2: The Big
  Bang Theory), validation a label-balanced fifth of the other shows.

Two tasks on the same clips: ``sarcasm`` (the label above) and ``valence``,
from MUStARD++ (Ray et al., LREC 2022; ``mustard++_text.csv`` of
github.com/cfiltnlp/MUStARD_Plus_Plus, the utterance of clip ``K`` being
row ``K_u``): its 1-9 valence rating in three classes, ``low`` (1-3),
``middle`` (4) and ``high`` (5-9), 82 / 63 / 65 of the 210 clips: a task
where the words say much and the voice some.

Manifests are CSV files with the columns ``ID,wav,text,label,speaker,show,
duration``: the generic recipe's (recipes/AudioText/turbo). Every fold of a
split at once, ``<save_folder>/fold<k>/{train,valid,test}.csv``, the audio
converted to ``<save_folder>/audio_16k``, from a folder holding clones of
the two repositories (``MUStARD`` and ``cmpt-419``):

    > python mustard_prepare.py /path/to/folder results/MUStARD_folds

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import hashlib
import json
import os
from collections import Counter, defaultdict

from speechbrain.dataio import audio_io
from speechbrain.utils.logger import get_logger, setup_logging

from speechbrain_turbo.dataio import load_audio
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
OPT_FILE = "prepare_mustard.json"
COLUMNS = ("ID", "wav", "text", "label", "speaker", "show", "duration")
LABELS = {True: "sarcastic", False: "not_sarcastic"}
NUM_FOLDS = 5
# The test show of each fold of the "show" split.
SHOW_FOLDS = {1: "FRIENDS", 2: "BBT"}
SPLIT_KINDS = ("stratified", "speaker", "show")
TASKS = ("sarcasm", "valence")
# MUStARD++ valence ratings (1-9) -> class.
VALENCE_CLASSES = {
    **dict.fromkeys(range(1, 4), "low"),
    4: "middle",
    **dict.fromkeys(range(5, 10), "high"),
}


def prepare_mustard(
    sarcasm_json,
    audio_folder,
    save_folder,
    converted_folder,
    split="stratified",
    test_fold=1,
    valid_fold=None,
    context_lines=0,
    sample_rate=16000,
    skip_prep=False,
    task="sarcasm",
    plus_plus_csv=None,
):
    """Writes ``train.csv``, ``valid.csv`` and ``test.csv`` for MUStARD.

    Arguments
    ---------
    sarcasm_json : str
        ``data/sarcasm_data.json`` of the MUStARD repository.
    audio_folder : str
        The folder of ``<key>.wav`` files.
    save_folder : str
        Where the manifests and the options file go.
    converted_folder : str
        Where the 16 kHz mono copies are written (once; reused after).
    split : str
        ``stratified``, ``speaker`` or ``show`` (see the module's doc).
    test_fold : int
        The test fold: 1-5, or 1-2 for ``show``.
    valid_fold : int, optional
        The validation fold (not for ``show``); default: the next one.
    context_lines : int
        How many of the last context lines to put before the utterance.
    sample_rate : int
        Sample rate of the converted audio.
    skip_prep : bool
        If True, do nothing and return None.
    task : str
        ``sarcasm`` or ``valence`` (see the module's doc).
    plus_plus_csv : str, optional
        ``mustard++_text.csv`` of the MUStARD++ repository (``valence``).

    Returns
    -------
    summary : dict or None
        ``counts`` ({split: {label: int}}), ``speakers`` and ``shows``
        ({split: [str]}), ``without_audio`` (number of labelled utterances
        with no audio file), ``ignored`` (audio files without a label) and
        ``reused`` (True when the existing manifests matched).

    Example
    -------
    >>> summary = prepare_mustard(
    ...     "MUStARD/data/sarcasm_data.json", "cmpt-419/audio_data",
    ...     "prep", "converted"
    ... )  # doctest: +SKIP
    >>> summary["counts"]["test"]  # doctest: +SKIP
    {'not_sarcastic': 21, 'sarcastic': 21}
    """
    if skip_prep:
        return None
    test_fold, valid_fold = check_folds(split, test_fold, valid_fold)
    if int(context_lines) < 0:
        raise InputError(f"context_lines must be >= 0, not {context_lines}")
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, not {task!r}")
    options = {
        "format_version": PREP_VERSION,
        "sarcasm_json": os.path.abspath(sarcasm_json),
        "audio_folder": os.path.abspath(audio_folder),
        "converted_folder": os.path.abspath(converted_folder),
        "split": split,
        "test_fold": test_fold,
        "valid_fold": valid_fold,
        "context_lines": int(context_lines),
        "sample_rate": int(sample_rate),
    }
    if task != "sarcasm":
        options["task"] = task
        options["plus_plus_csv"] = os.path.abspath(plus_plus_csv)
    summary = reusable_split_manifests(
        save_folder, OPT_FILE, options, "MUStARD"
    )
    if summary is not None:
        return summary

    items = read_labels(sarcasm_json)
    if task == "valence":
        labels = read_valence_classes(plus_plus_csv)
    else:
        labels = {key: LABELS[item["sarcasm"]] for key, item in items.items()}
    entries, ignored = [], []
    for name in sorted(_list_audio(audio_folder)):
        key = name[: -len(".wav")]
        if key not in items:
            ignored.append(name)
            continue
        item = items[key]
        if key not in labels:
            raise InputError(
                f"{plus_plus_csv} has no row {key}_u (the utterance of the "
                f"clip {os.path.join(audio_folder, name)}): use the MUStARD++ "
                "release that rates every clip of cmpt-419"
            )
        wav = convert_audio(
            os.path.join(audio_folder, name),
            os.path.join(converted_folder, name),
            sample_rate,
        )
        first = max(0, len(item["context"]) - int(context_lines))
        context = item["context"][first:]
        entries.append(
            {
                "ID": key,
                "wav": os.path.abspath(wav),
                "text": " ".join([*context, item["utterance"]]).strip(),
                "label": labels[key],
                "speaker": item["speaker"],
                "show": item["show"],
                "duration": round(audio_io.info(wav).duration, 3),
            }
        )
    if ignored:
        logger.warning(
            "%d audio file(s) in %s have no entry in %s and are left out: %s",
            len(ignored),
            audio_folder,
            sarcasm_json,
            ", ".join(ignored[:10]) + (" ..." if len(ignored) > 10 else ""),
        )
    if not entries:
        raise InputError(
            f"No file of {audio_folder} is named after a key of "
            f"{sarcasm_json} (<key>.wav, e.g. 1_60.wav)"
        )
    without_audio = len(items) - len(entries)
    logger.info(
        "MUStARD: %d utterances with audio; %d labelled utterances of %s "
        "have no audio file in %s and are not used.",
        len(entries),
        without_audio,
        sarcasm_json,
        audio_folder,
    )

    fold_of = assign_folds(entries, split)
    if split == "show":
        test = [e for e in entries if e["show"] == SHOW_FOLDS[test_fold]]
        rest = [e for e in entries if e["show"] != SHOW_FOLDS[test_fold]]
        rest_folds = assign_folds(rest, "stratified")
        valid = [e for e in rest if rest_folds[e["ID"]] == 1]
        train = [e for e in rest if rest_folds[e["ID"]] != 1]
        splits = {"train": train, "valid": valid, "test": test}
    else:
        splits = {
            "test": [e for e in entries if fold_of[e["ID"]] == test_fold],
            "valid": [e for e in entries if fold_of[e["ID"]] == valid_fold],
            "train": [
                e
                for e in entries
                if fold_of[e["ID"]] not in (test_fold, valid_fold)
            ],
        }
    summary = write_split_manifests(
        save_folder,
        OPT_FILE,
        options,
        splits,
        COLUMNS,
        {
            "speakers": {
                name: sorted({e["speaker"] for e in rows})
                for name, rows in splits.items()
            },
            "shows": {
                name: sorted({e["show"] for e in rows})
                for name, rows in splits.items()
            },
            "without_audio": without_audio,
            "ignored": ignored,
        },
    )
    for name in SPLITS:
        logger.info(
            "MUStARD %s: %d utterances %s, shows %s.",
            name,
            len(splits[name]),
            summary["counts"][name],
            summary["shows"][name],
        )
    return {**summary, "reused": False}


def prepare_mustard_folds(
    data_folder,
    save_folder,
    split="stratified",
    context_lines=0,
    task="sarcasm",
):
    """Writes the manifests of every fold of a split, ``<save_folder>/fold<k>``.

    Fold ``k`` is what :func:`prepare_mustard` writes (and reuses) for
    ``test_fold=k``; the audio is converted once, to
    ``<save_folder>/audio_16k``.

    Arguments
    ---------
    data_folder : str
        The folder holding the clones ``MUStARD`` (labels, texts;
        github.com/soujanyaporia/MUStARD) and ``cmpt-419`` (the audio of
        210 utterances; github.com/katiesun138/cmpt-419).
    save_folder : str
        Where the fold folders go.
    split : str
        ``stratified`` (5 folds), ``speaker`` (5) or ``show`` (2).
    context_lines : int
        How many of the last context lines to put before the utterance.
    task : str
        ``sarcasm`` or ``valence`` (from the clone ``MUStARD_Plus_Plus``
        beside the other two; github.com/cfiltnlp/MUStARD_Plus_Plus).

    Returns
    -------
    dict
        ``{fold: summary}``, as :func:`prepare_mustard` returns them.

    Example
    -------
    >>> folds = prepare_mustard_folds("data", "folds")  # doctest: +SKIP
    >>> sorted(folds)  # doctest: +SKIP
    [1, 2, 3, 4, 5]
    """
    sarcasm_json = os.path.join(
        data_folder, "MUStARD", "data", "sarcasm_data.json"
    )
    audio_folder = os.path.join(data_folder, "cmpt-419", "audio_data")
    folds = SHOW_FOLDS if split == "show" else range(1, NUM_FOLDS + 1)
    return {
        fold: prepare_mustard(
            sarcasm_json,
            audio_folder,
            os.path.join(save_folder, f"fold{fold}"),
            os.path.join(save_folder, "audio_16k"),
            split=split,
            test_fold=fold,
            context_lines=context_lines,
            task=task,
            plus_plus_csv=os.path.join(
                data_folder, "MUStARD_Plus_Plus", "mustard++_text.csv"
            ),
        )
        for fold in folds
    }


def check_folds(split, test_fold, valid_fold):
    """Checks the split kind and fold numbers; returns the folds as ints.

    Arguments
    ---------
    split : str
        ``stratified``, ``speaker`` or ``show``.
    test_fold : int
        1-5 (1-2 for ``show``).
    valid_fold : int or None
        1-5 and not ``test_fold``; None: the next. Must be None for
        ``show`` (validation comes from the other shows).

    Returns
    -------
    test_fold, valid_fold : int or None

    Example
    -------
    >>> check_folds("speaker", 5, None)
    (5, 1)
    >>> check_folds("show", 2, None)
    (2, None)
    """
    if split not in SPLIT_KINDS:
        raise InputError(f"split must be one of {SPLIT_KINDS}, not {split!r}")
    if split == "show":
        if test_fold not in SHOW_FOLDS:
            raise InputError(
                f"With split=show, test_fold is the held-out show: one of "
                f"{SHOW_FOLDS}, not {test_fold!r}"
            )
        if valid_fold is not None:
            raise InputError(
                "With split=show, validation is a fifth of the other shows: "
                f"leave valid_fold unset (got {valid_fold!r})"
            )
        return int(test_fold), None
    folds = list(range(1, NUM_FOLDS + 1))
    if test_fold not in folds:
        raise InputError(f"test_fold must be one of {folds}, not {test_fold!r}")
    if valid_fold is None:
        valid_fold = test_fold % NUM_FOLDS + 1
    if valid_fold not in folds or valid_fold == test_fold:
        raise InputError(
            f"valid_fold must be one of {folds} other than test_fold "
            f"{test_fold}, not {valid_fold!r}"
        )
    return int(test_fold), int(valid_fold)


def read_valence_classes(plus_plus_csv):
    r"""Reads MUStARD++'s valence ratings of the utterances: clip key ->
    class (``VALENCE_CLASSES``).

    Arguments
    ---------
    plus_plus_csv : str
        ``mustard++_text.csv``: one row per line of a scene, the utterance
        of clip ``K`` being ``KEY`` ``K_u``, with its ``Valence`` (1-9).

    Returns
    -------
    dict

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "mustard++_text.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("KEY,Valence\n1_1_c_00,\n1_1_u,7\n1_2_u,3\n")
    >>> read_valence_classes(path)
    {'1_1': 'high', '1_2': 'low'}
    """
    if plus_plus_csv is None or not os.path.isfile(plus_plus_csv):
        raise MissingInputError(
            f"{plus_plus_csv} does not exist: clone the MUStARD++ repository "
            "(github.com/cfiltnlp/MUStARD_Plus_Plus) next to MUStARD/ for "
            "the valence task"
        )
    classes = {}
    with open(plus_plus_csv, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            key = row.get("KEY") or ""
            if not key.endswith("_u"):
                continue  # a line of the context
            rating = (row.get("Valence") or "").strip()
            if not rating.isdigit() or int(rating) not in VALENCE_CLASSES:
                raise InputError(
                    f"{plus_plus_csv}, line {line}, key {key}: Valence must "
                    f"be an integer 1-9, found {rating!r}"
                )
            classes[key[: -len("_u")]] = VALENCE_CLASSES[int(rating)]
    return classes


def read_labels(sarcasm_json):
    """Reads ``sarcasm_data.json``: key -> utterance, speaker, context,
    show and sarcasm flag, each checked.

    Arguments
    ---------
    sarcasm_json : str
        The file.

    Returns
    -------
    dict
        The file's content.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "sarcasm_data.json")
    >>> item = {"utterance": "Sure.", "speaker": "A", "context": [],
    ...         "show": "FRIENDS", "sarcasm": True}
    >>> with open(path, "w") as f:
    ...     json.dump({"1_1": item}, f)
    >>> read_labels(path)["1_1"]["sarcasm"]
    True
    """
    if not os.path.isfile(sarcasm_json):
        raise MissingInputError(
            f"{sarcasm_json} does not exist: clone the MUStARD repository "
            "(github.com/soujanyaporia/MUStARD) and point sarcasm_json (or "
            "data_folder) at it"
        )
    with open(sarcasm_json, encoding="utf-8") as f:
        items = json.load(f)
    fields = {
        "utterance": str,
        "speaker": str,
        "context": list,
        "show": str,
        "sarcasm": bool,
    }
    for key, item in items.items():
        for field, kind in fields.items():
            if not isinstance(item.get(field), kind):
                raise InputError(
                    f"{sarcasm_json}, key {key}: field {field!r} must be a "
                    f"{kind.__name__}, found {item.get(field)!r}"
                )
    return items


def assign_folds(entries, split):
    """Fold number (1-5) of each entry, deterministically.

    ``stratified``: within each label, entries ordered by a hash of their ID
    are dealt to the folds in turn. ``speaker`` (and ``show``): speakers,
    largest first, each go whole to the fold with the fewest entries so far.

    Arguments
    ---------
    entries : list of dict
        Rows with ``ID``, ``label`` and ``speaker``.
    split : str
        ``stratified`` or ``speaker``; ``show`` uses ``speaker`` folds for
        nothing but returns them for completeness.

    Returns
    -------
    dict
        ID -> fold.

    Example
    -------
    >>> rows = [{"ID": str(i), "label": i % 2, "speaker": "AB"[i % 2]}
    ...         for i in range(10)]
    >>> sorted(Counter(assign_folds(rows, "stratified").values()).items())
    [(1, 2), (2, 2), (3, 2), (4, 2), (5, 2)]
    >>> len(set(assign_folds(rows, "speaker").values()))
    2
    """
    folds = {}
    if split == "stratified":
        by_label = defaultdict(list)
        for entry in entries:
            by_label[entry["label"]].append(entry["ID"])
        start = 0
        for label in sorted(by_label):
            ids = sorted(by_label[label], key=_stable_hash)
            for i, key in enumerate(ids):
                folds[key] = (start + i) % NUM_FOLDS + 1
            # The next label continues where this one stopped, so that the
            # folds' sizes differ by at most one.
            start = (start + len(ids)) % NUM_FOLDS
        return folds
    sizes = Counter(entry["speaker"] for entry in entries)
    load = dict.fromkeys(range(1, NUM_FOLDS + 1), 0)
    fold_of_speaker = {}
    for speaker, size in sorted(sizes.items(), key=lambda s: (-s[1], s[0])):
        fold = min(load, key=lambda f: (load[f], f))
        fold_of_speaker[speaker] = fold
        load[fold] += size
    return {entry["ID"]: fold_of_speaker[entry["speaker"]] for entry in entries}


def convert_audio(source, target, sample_rate):
    """Writes ``source`` as a mono 16-bit WAV at ``sample_rate``, unless
    ``target`` exists; atomically, so that runs in parallel can share it.

    Arguments
    ---------
    source : str
        Any audio file.
    target : str
        The converted file.
    sample_rate : int
        Its sample rate.

    Returns
    -------
    str
        ``target``.

    Example
    -------
    >>> import tempfile, torch
    >>> folder = tempfile.mkdtemp()
    >>> source = os.path.join(folder, "a.wav")
    >>> audio_io.save(source, torch.zeros(2, 4410), 44100)
    >>> target = convert_audio(source, os.path.join(folder, "b.wav"), 16000)
    >>> info = audio_io.info(target)
    >>> info.sample_rate, info.num_channels, info.num_frames
    (16000, 1, 1600)
    """
    if os.path.isfile(target):
        return target
    try:
        signal = load_audio(source, sample_rate)
    except Exception as error:
        raise InputError(
            f"{source}: cannot be read as audio ({error}); replace the file "
            "with an intact copy"
        ) from error
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    partial = f"{target}.{os.getpid()}.tmp.wav"
    audio_io.save(partial, signal.clamp(-1, 1)[None], sample_rate)
    os.replace(partial, target)
    return target


def _list_audio(audio_folder):
    """The ``.wav`` files of ``audio_folder`` (an error if it is missing)."""
    if not os.path.isdir(audio_folder):
        raise MissingInputError(
            f"{audio_folder} does not exist: clone the repository holding "
            "the MUStARD audio (github.com/katiesun138/cmpt-419, folder "
            "audio_data/) and point audio_folder (or data_folder) at it"
        )
    return [n for n in os.listdir(audio_folder) if n.endswith(".wav")]


def _stable_hash(key):
    """An order of IDs that does not depend on Python's hash seed."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description="Writes MUStARD's folds as the generic recipe's "
        "manifests (recipes/AudioText/turbo)."
    )
    parser.add_argument(
        "data_folder",
        help="the folder holding MUStARD/ and cmpt-419/ (and, for the "
        "valence task, MUStARD_Plus_Plus/)",
    )
    parser.add_argument("save_folder", help="where the fold folders go")
    parser.add_argument("--split", choices=SPLIT_KINDS, default="stratified")
    parser.add_argument("--context_lines", type=int, default=0)
    parser.add_argument("--task", choices=TASKS, default="sarcasm")
    args = parser.parse_args()
    setup_logging()
    with reported_input_errors():
        prepare_mustard_folds(
            args.data_folder,
            args.save_folder,
            args.split,
            args.context_lines,
            args.task,
        )
