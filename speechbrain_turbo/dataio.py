"""Audio-text data pipelines: manifests -> DynamicItemDatasets of
(audio, text tokens, transcript, label).

Every dataset item provides ``id``, ``audio`` (mono waveform at the model's
sample rate), ``text`` (token ids), ``transcript`` (the normalised text, used
to mask repeated sentences as negatives) and ``label`` (class id).

Authors
 * speechbrain-turbo contributors
"""

import csv
import hashlib
import os
import re

import speechbrain as sb
import torch
import torchaudio
from speechbrain.dataio import audio_io
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

_resample_warned = set()

MANIFEST_COLUMNS = ("ID", "wav", "text", "label")


def normalize_transcript(text):
    """Lower-cases and strips punctuation, so that repeats compare equal.

    Arguments
    ---------
    text : str
        A transcript.

    Returns
    -------
    str
        The normalised transcript.

    Example
    -------
    >>> normalize_transcript("  Excuse me!  Excuse ME.")
    'excuse me excuse me'
    """
    words = re.sub(r"[^\w']+", " ", text.lower())
    return " ".join(words.split())


def transcript_group_ids(transcripts):
    """Maps transcripts to integer ids, equal exactly for equal transcripts.

    The ids are stable hashes (not positions in the batch), so that they stay
    comparable across processes when negatives are gathered across GPUs.

    Arguments
    ---------
    transcripts : list of str
        Normalised transcripts, one per row.

    Returns
    -------
    torch.Tensor
        ``[B]`` int64 ids.

    Example
    -------
    >>> ids = transcript_group_ids(["yes", "no", "yes"])
    >>> bool(ids[0] == ids[2]), bool(ids[0] == ids[1])
    (True, False)
    """
    return torch.tensor(
        [
            int.from_bytes(
                hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest(),
                "little",
                signed=True,
            )
            for t in transcripts
        ],
        dtype=torch.long,
    )


def load_audio(path, sample_rate):
    """Reads an audio file as a mono waveform at ``sample_rate``.

    Multi-channel audio is averaged to mono; another sample rate is
    resampled (logged once per source rate).

    Arguments
    ---------
    path : str
        Audio file path.
    sample_rate : int
        Sample rate the model expects.

    Returns
    -------
    torch.Tensor
        ``[T]`` float waveform.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> audio_io.save(path, torch.zeros(2, 800), 8000)
    >>> load_audio(path, 16000).shape
    torch.Size([1600])
    """
    signal, source_rate = audio_io.load(path, channels_first=True)
    signal = signal.mean(dim=0)
    if source_rate != sample_rate:
        if source_rate not in _resample_warned:
            _resample_warned.add(source_rate)
            logger.info(
                "Resampling audio from %d Hz to %d Hz (first seen: %s)",
                source_rate,
                sample_rate,
                path,
            )
        signal = torchaudio.functional.resample(
            signal, source_rate, sample_rate
        )
    return signal


def read_csv_manifest(path, data_root="", labels=None):
    """Reads and checks an audio-text CSV manifest.

    Columns ``ID,wav,text,label`` are required (others, such as
    ``duration`` and ``speaker``, are kept). ``$data_root`` in ``wav`` is
    replaced by ``data_root``, as SpeechBrain's CSV loader does. Every
    problem raises a ``ValueError`` naming the file, the line, the ID and
    the column: a missing column, an empty or duplicated ID, a wav file that
    does not exist, an empty transcript or label, and, when ``labels`` is
    given, a label outside it.

    Arguments
    ---------
    path : str
        The CSV file.
    data_root : str
        Replaces ``$data_root`` in the ``wav`` column.
    labels : collection of str, optional
        The allowed labels (the training set's), for validation and test.

    Returns
    -------
    list of dict
        The rows, with ``wav`` resolved.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> audio_io.save(f"{folder}/a.wav", torch.zeros(1, 160), 16000)
    >>> with open(f"{folder}/train.csv", "w") as f:
    ...     print("ID,wav,text,label", file=f)
    ...     print("a,$data_root/a.wav,Hi.,joy", file=f)
    >>> [r["label"] for r in read_csv_manifest(f"{folder}/train.csv", folder)]
    ['joy']
    >>> read_csv_manifest(
    ...     f"{folder}/train.csv", folder, labels={"sad"}
    ... )  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...train.csv line 2 (ID 'a'), column label: 'joy' is not ...
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in MANIFEST_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {', '.join(missing)} (found "
                f"{', '.join(columns) or 'none'}). An audio-text manifest "
                "needs the header ID,wav,text,label (optional: duration, "
                "speaker)"
            )
        rows, first_line = [], {}
        for line, row in enumerate(reader, start=2):
            where = f"{path} line {line} (ID {row['ID']!r})"
            _check_manifest_row(row, where, first_line, data_root, labels)
            first_line[row["ID"]] = line
            rows.append(row)
    return rows


def _check_manifest_row(row, where, first_line, data_root, labels):
    """Raises a ValueError naming row and column for the first problem."""
    empty = [c for c in MANIFEST_COLUMNS if not (row[c] or "").strip()]
    if empty:
        what = "transcript" if empty[0] == "text" else "value"
        raise ValueError(
            f"{where}, column {empty[0]}: empty {what}; fill it in or drop "
            "the row"
        )
    if row["ID"] in first_line:
        raise ValueError(
            f"{where}, column ID: duplicate of line {first_line[row['ID']]}; "
            "IDs must be unique"
        )
    row["wav"] = row["wav"].replace("$data_root", data_root)
    if not os.path.isfile(row["wav"]):
        raise ValueError(
            f"{where}, column wav: no file {row['wav']!r}. Paths are used "
            "as written (relative ones from the working directory); write "
            "$data_root/... and pass --data_folder to root them elsewhere"
        )
    if labels is not None and row["label"] not in labels:
        raise ValueError(
            f"{where}, column label: {row['label']!r} is not among the "
            f"training labels {sorted(labels)}; fix the label or drop the row"
        )


def count_labels(path, data_root=""):
    """Number of distinct labels in a (checked) CSV manifest.

    Lets a YAML file size the classifier from the training manifest:
    ``out_n_neurons: !apply:speechbrain_turbo.dataio.count_labels [...]``.

    Arguments
    ---------
    path : str
        The training CSV manifest (see :func:`read_csv_manifest`).
    data_root : str
        Replaces ``$data_root`` in the ``wav`` column.

    Returns
    -------
    int
        How many classes the training manifest holds.
    """
    return len({row["label"] for row in read_csv_manifest(path, data_root)})


def audio_text_datasets(
    manifests,
    text_to_ids,
    label_encoder,
    label_encoder_file,
    data_root="",
    sample_rate=16000,
    label_key="emo",
):
    """Builds the DynamicItemDatasets of an audio-text classification task.

    Arguments
    ---------
    manifests : dict
        Split name -> manifest path, JSON (``wav`` may use ``{data_root}``)
        or CSV (``.csv``; ``wav`` may use ``$data_root``). Must include
        ``train``; entries hold ``wav``, ``text`` and the label.
    text_to_ids : callable
        ``text -> list of int`` token ids (e.g. a SentencePiece encoder).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Fitted on the training split (or loaded from ``label_encoder_file``).
    label_encoder_file : str
        Where the label encoder is saved / loaded from.
    data_root : str
        Replaces ``{data_root}`` in the manifests' paths.
    sample_rate : int
        Sample rate the model expects.
    label_key : str
        Manifest field holding the class label.

    Returns
    -------
    dict
        Split name -> DynamicItemDataset with output keys ``id``, ``audio``,
        ``text``, ``transcript`` and ``label``.
    """

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("audio")
    def audio_pipeline(wav):
        return load_audio(wav, sample_rate)

    @sb.utils.data_pipeline.takes("id", "text")
    @sb.utils.data_pipeline.provides("transcript", "text_ids")
    def text_pipeline(utterance_id, text):
        yield normalize_transcript(text)
        ids = list(text_to_ids(text))
        if not ids:
            raise ValueError(
                f"Utterance {utterance_id}: its transcript {text!r} gives no "
                "tokens; fix or drop it in the manifest"
            )
        yield torch.LongTensor(ids)

    @sb.utils.data_pipeline.takes("id", label_key)
    @sb.utils.data_pipeline.provides("class_id")
    def label_pipeline(utterance_id, label):
        if label not in label_encoder.lab2ind:
            raise ValueError(
                f"Utterance {utterance_id}: label {label!r} is not among the "
                f"training labels {sorted(label_encoder.lab2ind)}; drop it "
                "from the manifest or add training examples of it"
            )
        return label_encoder.encode_label_torch(label)

    datasets = {}
    for split, path in manifests.items():
        load = sb.dataio.dataset.DynamicItemDataset.from_json
        if path.endswith(".csv"):
            load = sb.dataio.dataset.DynamicItemDataset.from_csv
        datasets[split] = load(
            path,
            replacements={"data_root": data_root},
            dynamic_items=[audio_pipeline, text_pipeline, label_pipeline],
        )
    # "text" in a batch is the token ids: the name the text encoder reads.
    for dataset in datasets.values():
        dataset.set_output_keys(
            {
                "id": "id",
                "audio": "audio",
                "text": "text_ids",
                "transcript": "transcript",
                "label": "class_id",
            }
        )
    label_encoder.load_or_create(
        path=label_encoder_file,
        from_didatasets=[datasets["train"]],
        output_key=label_key,
    )
    return datasets
