"""The demo corpus' text files in IEMOCAP's layout: the EmoEvaluation summary
and annotator files and the transcriptions, with the turns' timestamps.

Authors
 * speechbrain-turbo contributors
"""

import os

import numpy as np
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.demo.plan import UtteranceSpec  # noqa: F401 (doctests)
from speechbrain_turbo.demo.settings import CATEGORY_NAMES, SAMPLE_RATE

logger = get_logger(__name__)


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
    >>> from speechbrain_turbo.demo.plan import DialogSpec
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
    >>> from speechbrain_turbo.demo.plan import DialogSpec
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
    >>> from speechbrain_turbo.demo.plan import DialogSpec
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
