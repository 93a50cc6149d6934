"""Bad-input screening of audio-text manifests, under a policy.

Every manifest entry is checked before training: a duplicated id, a missing
or non-UTF-8 transcript, a label outside the class set, and audio that is
missing, unreadable, truncated, empty or longer than a maximum. With
``on_bad_input: error`` the first problem stops the run with a message that
names the manifest, the line or utterance, the column and what to do; with
``on_bad_input: skip`` the entry is left out, counted, logged and written to
a rejects file with its reason, so that used + rejected is what came in.

Another sample rate (resampled) and several channels (averaged) are not
problems: :func:`speechbrain_turbo.dataio.load_audio` handles them.

Authors
 * speechbrain-turbo contributors
"""

import csv
import os
import struct
from collections import Counter

from speechbrain.dataio import audio_io
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.errors import InputError

logger = get_logger(__name__)

ON_BAD_INPUT = ("error", "skip")
REJECT_COLUMNS = ("split", "id", "where", "column", "reason")


def wav_truncation(path):
    """Frames a WAV header promises but the file lacks (0 if complete).

    libsndfile reads a truncated WAV without complaint, returning fewer
    frames than its header declares; this compares the two.

    Arguments
    ---------
    path : str
        Any audio file (non-WAV files return 0).

    Returns
    -------
    int
        Missing bytes of the ``data`` chunk; 0 when complete, not a WAV, or
        when the header leaves the size open (streamed files).

    Example
    -------
    >>> import tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> audio_io.save(path, torch.zeros(1, 100), 16000)
    >>> wav_truncation(path)
    0
    >>> data = open(path, "rb").read()
    >>> _ = open(path, "wb").write(data[:-50])
    >>> wav_truncation(path)
    50
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:] != b"WAVE":
            return 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return 0
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"data":
                if length in (0, 0xFFFFFFFF):
                    return 0
                return max(length - (size - f.tell()), 0)
            f.seek(length + (length & 1), os.SEEK_CUR)


def audio_problem(path, max_seconds=None):
    """Why an audio file cannot be used, or None if it can.

    Arguments
    ---------
    path : str
        The audio file.
    max_seconds : float, optional
        Longest accepted duration.

    Returns
    -------
    tuple of str or None
        ``(reason, what to do)``, or None for a usable file.

    Example
    -------
    >>> audio_problem("/no/such.wav")[0]
    "no file '/no/such.wav'"
    """
    return inspect_audio(path, max_seconds)[0]


# The most decoded audio a second of an accepted file may hold: 48 kHz
# stereo float32. Checked from the header, before decoding: a compressed
# file of many channels at a high rate is small on disk and huge decoded.
MAX_DECODED_BYTES_PER_SECOND = 48000 * 2 * 4


def decoded_bytes(info):
    """Bytes of float32 samples a file decodes to, from its header.

    Arguments
    ---------
    info : object
        ``speechbrain.dataio.audio_io.info``'s result (frames, channels).

    Returns
    -------
    int
        ``frames * channels * 4``.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> decoded_bytes(SimpleNamespace(frames=16000, channels=2))
    128000
    """
    return info.frames * info.channels * 4


def inspect_audio(path, max_seconds=None):
    """An audio file's problem (as :func:`audio_problem`) and its duration,
    from one reading of its header.

    Arguments
    ---------
    path : str
        The audio file.
    max_seconds : float, optional
        Longest accepted duration; it also bounds what the file may decode
        to (``max_seconds`` of 48 kHz stereo), checked from the header.

    Returns
    -------
    problem : tuple of str or None
        ``(reason, what to do)``, or None for a usable file.
    seconds : float or None
        The duration, None when the header could not be read.

    Example
    -------
    >>> import tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> audio_io.save(path, torch.zeros(1, 8000), 16000)
    >>> inspect_audio(path)
    (None, 0.5)
    >>> inspect_audio(path, max_seconds=0.25)[0][0]  # doctest: +ELLIPSIS
    "audio '...a.wav' lasts 0.5 s, more than max_audio_seconds=0.25"
    """
    if not os.path.isfile(path):
        return (f"no file {path!r}", "restore the file or drop the entry"), None
    try:
        info = audio_io.info(path)
    except Exception as error:  # libsndfile raises its own error types
        return (
            f"unreadable audio {path!r} ({error})",
            "re-export it as WAV or FLAC, or drop the entry",
        ), None
    missing = wav_truncation(path)
    if missing:
        problem = (
            f"truncated audio {path!r}: the WAV header declares "
            f"{missing} more bytes than the file holds",
            "copy the file again from its source, or drop the entry",
        )
    elif info.frames == 0:
        problem = (f"empty audio {path!r} (0 samples)", "drop the entry")
    elif max_seconds is not None and (
        decoded_bytes(info) > max_seconds * MAX_DECODED_BYTES_PER_SECOND
    ):
        problem = (
            f"audio {path!r} would decode to "
            f"{decoded_bytes(info) / 1e6:.0f} MB ({info.channels} channels "
            f"at {info.sample_rate} Hz), more than {max_seconds} s of 48 kHz "
            "stereo",
            "convert it to mono at 16 kHz, or drop it",
        )
    elif max_seconds is not None and info.duration > max_seconds:
        problem = (
            f"audio {path!r} lasts {info.duration:.1f} s, more than "
            f"max_audio_seconds={max_seconds}",
            "cut it into shorter segments, drop it, or raise "
            "--max_audio_seconds",
        )
    else:
        problem = None
    return problem, info.duration


class InputScreen:
    """Applies the ``on_bad_input`` policy and keeps the rejects.

    Arguments
    ---------
    on_bad_input : str
        ``error`` (stop at the first bad entry) or ``skip`` (leave it out,
        counted and listed).

    Example
    -------
    >>> screen = InputScreen("skip")
    >>> screen.reject("train", "u1", "m.csv line 2", "text", "empty", "fix")
    >>> screen.counts("train")
    Counter({'empty': 1})
    >>> InputScreen("error").reject(
    ...     "train", "u1", "m.csv line 2", "text", "empty transcript", "fix it"
    ... )  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_turbo.errors.InputError: m.csv line 2, column text: ...
    """

    def __init__(self, on_bad_input="error"):
        if on_bad_input not in ON_BAD_INPUT:
            raise ValueError(
                f"hparams key on_bad_input must be one of {ON_BAD_INPUT}, "
                f"got {on_bad_input!r}"
            )
        self.on_bad_input = on_bad_input
        self.rejects = []

    def reject(self, split, item_id, where, column, reason, fix):
        """Raises (``error``) or records (``skip``) one bad entry.

        Arguments
        ---------
        split : str
            Dataset split.
        item_id : str
            The entry's id.
        where : str
            The manifest and line or key, for the message.
        column : str
            The field at fault.
        reason : str
            What is wrong.
        fix : str
            What to do about it.
        """
        if self.on_bad_input == "error":
            raise InputError(
                f"{where}, column {column}: {reason}; {fix} (or set "
                "on_bad_input: skip to leave such entries out)"
            )
        self.rejects.append(
            {
                "split": split,
                "id": item_id,
                "where": where,
                "column": column,
                "reason": reason,
            }
        )

    def counts(self, split):
        """Rejected entries of a split, per kind of problem.

        Arguments
        ---------
        split : str
            Dataset split.

        Returns
        -------
        collections.Counter
            Reason (without the file name) -> count.
        """
        return Counter(
            r["reason"].split(" '")[0].split(" (")[0]
            for r in self.rejects
            if r["split"] == split
        )

    def write(self, path):
        """Writes the rejects as CSV (a header only when there are none).

        Arguments
        ---------
        path : str
            The CSV file to write.
        """
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=REJECT_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rejects)

    def screen(
        self, split, entries, label_key, labels=None, max_audio_seconds=None
    ):
        """Checks entries; returns the usable ones.

        Arguments
        ---------
        split : str
            Dataset split.
        entries : list of (str, str, dict)
            ``(id, where, entry)`` in manifest order; an entry holds ``wav``
            (resolved path), ``text`` (None when missing) and the label,
            and ``_row_problem`` when its row's form is wrong
            (:class:`speechbrain_turbo.manifests.RowProblem`).
        label_key : str
            The entry field holding the label.
        labels : collection of str, optional
            The allowed labels (None: any non-empty label).
        max_audio_seconds : float, optional
            Longest accepted audio.

        Returns
        -------
        dict
            id -> entry, for the entries that passed, each with its audio's
            ``duration`` in seconds (measured).
        """
        kept, first_seen = {}, {}
        for item_id, where, entry in entries:
            problem = self._problem(
                item_id, entry, first_seen, label_key, labels
            )
            first_seen.setdefault(item_id, where)
            if problem is None:
                audio, seconds = inspect_audio(entry["wav"], max_audio_seconds)
                problem = None if audio is None else ("wav", *audio)
            if problem is None:
                # Measured, not trusted from the manifest: duration-sized
                # batches and sorted evaluation order by it.
                entry["duration"] = round(seconds, 3)
                kept[item_id] = entry
            else:
                self.reject(split, item_id, where, *problem)
        rejected = len(entries) - len(kept)
        log = logger.warning if rejected else logger.info
        log(
            "%s: %d entries in, %d used, %d rejected%s",
            split,
            len(entries),
            len(kept),
            rejected,
            f" {dict(self.counts(split))}" if rejected else "",
        )
        return kept

    @staticmethod
    def _problem(item_id, entry, first_seen, label_key, labels):
        """(column, reason, fix) of an entry's first problem outside its
        audio file's contents, or None.
        """
        if item_id in first_seen:
            return (
                "ID",
                f"duplicate id (first at {first_seen[item_id]})",
                "give every utterance its own id",
            )
        if entry.get("_row_problem"):
            problem = entry["_row_problem"]
            column = "text" if problem.kind == "not_utf8" else "row"
            return (column, problem.reason, problem.fix)
        text = entry.get("text")
        if text is None or not str(text).strip():
            reason = (
                "missing transcript" if text is None else "empty transcript"
            )
            if entry.get("transcript_file"):
                reason += f" (no line in {entry['transcript_file']!r})"
            return ("text", reason, "add the transcript or drop the entry")
        label = entry.get(label_key)
        if label is None or not str(label).strip():
            return (label_key, "empty label", "add the label or drop the entry")
        if labels is not None and label not in labels:
            return (
                label_key,
                f"label {label!r} is not among the training labels "
                f"{sorted(labels)}",
                "fix the label or drop the entry",
            )
        wav = entry.get("wav")
        if not wav:
            return ("wav", "empty audio path", "fill it in or drop the entry")
        return None
