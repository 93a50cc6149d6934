"""The demo corpus, made: :func:`synthesize_corpus` plans it, renders the
audio and writes the IEMOCAP layout, and reuses a folder whose marker
matches the parameters and the generator's fingerprint.

Authors
 * speechbrain-turbo contributors
"""

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import time
from importlib import metadata

import torchaudio
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.demo import settings, text
from speechbrain_turbo.demo.audio import _render_chunk
from speechbrain_turbo.demo.espeak import _import_espeakng_loader
from speechbrain_turbo.demo.layout import _write_dialog_texts
from speechbrain_turbo.demo.plan import plan_corpus
from speechbrain_turbo.demo.settings import (
    EMOTION_SHARES,
    MARKER_NAME,
    NUM_SESSIONS,
    SAMPLE_RATE,
    SPEAKERS,
)
from speechbrain_turbo.preparation import write_json

logger = get_logger(__name__)


def corpus_fingerprint():
    """Hash of the generator version, the tuning tables and the text
    material.

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
        "version": settings.CORPUS_VERSION,
        "espeakng_loader": espeak_version,
        # Its resampling kernel shapes every sample.
        "torchaudio": torchaudio.__version__,
        "tables": {k: v for k, v in vars(settings).items() if k.isupper()},
        "text": text.MATERIAL,
    }
    encoded = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


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
    write_json(marker, os.path.join(output, MARKER_NAME))


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
    >>> from speechbrain_turbo.demo.plan import DialogSpec, UtteranceSpec
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
        "generator": "speechbrain_turbo.demo",
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
        prog="python -m speechbrain_turbo.demo",
        description="Synthesise the demo emotional speech corpus in the "
        "IEMOCAP_full_release layout.",
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
