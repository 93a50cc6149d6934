"""Audio-text data pipelines: manifests -> DynamicItemDatasets of
(audio, text tokens, transcript, label).

Every dataset item provides ``id``, ``audio`` (mono waveform at the model's
sample rate), ``text`` (token ids), ``transcript`` (the normalised text, used
to mask repeated sentences as negatives) and ``label`` (class id).

Authors
 * speechbrain-turbo contributors
"""

import hashlib
import re

import speechbrain as sb
import torch
import torchaudio
from speechbrain.dataio import audio_io
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

_resample_warned = set()


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
        Split name -> JSON manifest path. Must include ``train``; entries
        hold ``wav`` (may use ``{data_root}``), ``text`` and the label.
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
    @sb.utils.data_pipeline.provides("label")
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
        datasets[split] = sb.dataio.dataset.DynamicItemDataset.from_json(
            json_path=path,
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
                "label": "label",
            }
        )
    label_encoder.load_or_create(
        path=label_encoder_file,
        from_didatasets=[datasets["train"]],
        output_key=label_key,
    )
    return datasets
