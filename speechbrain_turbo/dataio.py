"""Audio-text data pipelines: manifests -> DynamicItemDatasets of
(audio, text tokens, transcript, label).

Every dataset item provides ``id``, ``audio`` (mono waveform at the model's
sample rate), ``text`` (token ids), ``transcript`` (the normalised text, used
to mask repeated sentences as negatives) and ``label`` (class id).

Authors
 * speechbrain-turbo contributors
"""

import hashlib
import json
import os
import re
from fractions import Fraction

import speechbrain as sb
import torch
import torchaudio
from speechbrain.dataio import audio_io
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.errors import InputError
from speechbrain_turbo.manifests import read_manifest
from speechbrain_turbo.screening import InputScreen

logger = get_logger(__name__)

_resample_warned = set()
# The largest terms of the rate ratio the resampling kernel is built for:
# torchaudio's kernel holds about new * (orig + 2 * width) floats for the
# reduced ratio new / orig, so co-prime rates (8,001 -> 16,000 Hz) would
# need gigabytes. Every ratio of the usual rates (8k to 192k, 11,025 and
# its multiples) is exact within this bound.
MAX_RESAMPLING_TERM = 1000

# The batch key holding each modality's model input: the waveform, and the
# transcript's token ids (the transcript itself is ``transcript``).
INPUT_KEYS = {"audio": "audio", "text": "token_ids"}


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


def file_stem(item_id):
    """A file name for an utterance ID, safe in any folder.

    IDs come from manifests and may hold anything (``../../x``, ``a/b``,
    control characters): everything that writes a file per utterance names
    it through this function. Characters other than letters, digits, ``.``,
    ``_`` and ``-`` become ``_``, leading dots are dropped, and a changed or
    empty name gets 8 hex digits of the ID's hash, so that two IDs never
    share a name.

    Arguments
    ---------
    item_id : str
        An utterance ID.

    Returns
    -------
    str
        The file name (without extension).

    Example
    -------
    >>> file_stem("Ses01F_impro01_F000")
    'Ses01F_impro01_F000'
    >>> file_stem("../../etc/passwd")
    'etc_passwd_3754d6cb'
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", item_id).lstrip("._")
    if stem != item_id or not stem:
        digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:8]
        stem = f"{stem[:80]}_{digest}" if stem else digest
    return stem


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
    # SpeechBrain's read_audio neither downmixes nor resamples; its
    # AudioNormalizer does, inside Pretrained only: training and inference
    # must share one loader.
    signal, source_rate = audio_io.load(path, channels_first=True)
    signal = signal.mean(dim=0)
    if source_rate != sample_rate:
        orig, new = resampling_ratio(source_rate, sample_rate)
        if source_rate not in _resample_warned:
            _resample_warned.add(source_rate)
            exact = orig * sample_rate == new * source_rate
            logger.info(
                "Resampling audio from %d Hz to %d Hz%s (first seen: %s)",
                source_rate,
                sample_rate,
                ""
                if exact
                else f" as if it were {sample_rate * orig / new:.2f} Hz",
                path,
            )
        signal = torchaudio.functional.resample(signal, orig, new)
    return signal


def resampling_ratio(source_rate, sample_rate, max_term=MAX_RESAMPLING_TERM):
    """The rate ratio to resample with, ``(orig, new)``: the exact one in
    lowest terms when ``orig`` is at most ``max_term``, else the nearest
    ratio whose ``orig`` is (a change of duration and pitch of at most
    ``1 / max_term``, 0.1 % by default), so that the resampling kernel
    stays small for every pair of rates.

    Arguments
    ---------
    source_rate : int
        The file's sample rate.
    sample_rate : int
        The model's.
    max_term : int
        The largest ``orig`` allowed.

    Returns
    -------
    orig, new : int
        ``torchaudio.functional.resample(x, orig, new)`` then resamples.

    Example
    -------
    >>> resampling_ratio(44100, 16000)
    (441, 160)
    >>> resampling_ratio(8001, 16000)  # co-prime: approximated
    (1, 2)
    """
    if source_rate <= 0 or sample_rate <= 0:
        raise ValueError(
            f"sample rates must be positive, got {source_rate} -> {sample_rate}"
        )
    ratio = Fraction(int(sample_rate), int(source_rate))
    if ratio.denominator > max_term:
        ratio = ratio.limit_denominator(max_term)
    return ratio.denominator, ratio.numerator


def count_labels(path, data_root=""):
    """Number of distinct labels in a manifest.

    Lets a YAML file size the classifier from the training manifest:
    ``out_n_neurons: !apply:speechbrain_turbo.dataio.count_labels [...]``.

    Arguments
    ---------
    path : str
        The training manifest (see :func:`read_manifest`).
    data_root : str
        Replaces the data root placeholder in ``wav``.

    Returns
    -------
    int
        How many non-empty labels the manifest holds.
    """
    entries = read_manifest(path, data_root)
    return len({e["label"] for _, _, e in entries if e.get("label")})


def screen_manifests(
    manifests,
    output_folder,
    label_key="emo",
    data_root="",
    on_bad_input="error",
    max_audio_seconds=None,
):
    """Screens every entry of every split for bad inputs.

    The training split is screened first; its labels are the class set of
    the others. Writes ``<split>_screened.json`` (the usable entries, paths
    resolved: what the run trains and tests on, and what the tokenizer
    learns from) and ``rejects.csv`` (the entries left out under
    ``on_bad_input: skip``, with their reasons) into ``output_folder``.

    Arguments
    ---------
    manifests : dict
        Split name -> JSON or CSV manifest (see :func:`read_manifest`).
        Must include ``train``.
    output_folder : str
        Where the screened manifests and the rejects are written.
    label_key : str
        The field holding the label.
    data_root : str
        Replaces the data root placeholder in ``wav``.
    on_bad_input : str
        ``error`` or ``skip`` (see
        :class:`speechbrain_turbo.screening.InputScreen`).
    max_audio_seconds : float, optional
        Longer audio is a bad input.

    Returns
    -------
    dict
        Split name -> screened JSON manifest path.
    """
    screened = {
        split: os.path.join(output_folder, f"{split}_screened.json")
        for split in manifests
    }
    # One process screens and writes; under DDP the others wait for it.
    run_on_main(
        _screen_and_write,
        args=[manifests, screened, output_folder, label_key, data_root],
        kwargs={
            "on_bad_input": on_bad_input,
            "max_audio_seconds": max_audio_seconds,
        },
    )
    return screened


def _screen_and_write(
    manifests,
    screened,
    output_folder,
    label_key,
    data_root,
    on_bad_input,
    max_audio_seconds,
):
    """The work of :func:`screen_manifests`, in one process."""
    screen = InputScreen(on_bad_input)
    labels, trained_on = None, set()
    for split in ["train"] + [name for name in manifests if name != "train"]:
        path = manifests[split]
        kept = screen.screen(
            split,
            read_manifest(path, data_root),
            label_key,
            labels=labels,
            max_audio_seconds=max_audio_seconds,
        )
        if not kept:
            raise InputError(
                f"{path}: no usable {split} entry (the manifest has none, or "
                "every one was rejected: see the log and rejects.csv)"
            )
        if split == "train":
            labels = {entry[label_key] for entry in kept.values()}
            trained_on = set(kept)
            if len(labels) < 2:
                raise InputError(
                    f"{path}: every usable training entry has the label "
                    f"{next(iter(labels))!r}; a classifier needs at least "
                    "two classes"
                )
        elif trained_on & set(kept):
            shared = sorted(trained_on & set(kept))
            raise InputError(
                f"{path}: {len(shared)} {split} ID(s) are also in the "
                f"training manifest {manifests['train']} (e.g. "
                f"{', '.join(map(repr, shared[:3]))}): an utterance must not "
                "be both trained and evaluated on; fix the split"
            )
        with open(screened[split], "w", encoding="utf-8") as f:
            json.dump(kept, f, indent=1, ensure_ascii=False)
    rejects_file = os.path.join(output_folder, "rejects.csv")
    screen.write(rejects_file)
    if screen.rejects:
        logger.warning(
            "%d entries left out (on_bad_input: skip), listed in %s",
            len(screen.rejects),
            rejects_file,
        )


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

    The manifests are expected to be screened (:func:`screen_manifests`).

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
        Split name -> DynamicItemDataset with output keys ``id``, ``audio``
        (the waveform), ``token_ids``, ``transcript`` (the normalised text)
        and ``label`` (the class id).
    """

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("audio")
    def audio_pipeline(wav):
        """The mono waveform at the model's sample rate."""
        return load_audio(wav, sample_rate)

    @sb.utils.data_pipeline.takes("id", "text")
    @sb.utils.data_pipeline.provides("transcript", "token_ids")
    def text_pipeline(utterance_id, text):
        """The normalised transcript, then its token ids."""
        yield normalize_transcript(text)
        ids = list(text_to_ids(text))
        if not ids:
            raise InputError(
                f"Utterance {utterance_id}: its transcript {text!r} gives no "
                "tokens; fix or drop it in the manifest"
            )
        yield torch.LongTensor(ids)

    @sb.utils.data_pipeline.takes(label_key)
    @sb.utils.data_pipeline.provides("class_id")
    def label_pipeline(label):
        """The class id."""
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
    for dataset in datasets.values():
        dataset.set_output_keys(
            {
                "id": "id",
                **{key: key for key in INPUT_KEYS.values()},
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


def fit_sentencepiece(make_tokenizer):
    """Trains (or loads) a SentencePiece tokenizer whose vocabulary fits its
    training text.

    SentencePiece refuses a vocabulary larger than the transcripts allow
    ("Vocabulary size too high"), which a corpus of a few sentences read
    many times (as acted emotion corpora are) always hits. The largest
    allowed size is then used instead, and the log says so; the text
    embedding keeps ``vocab_size`` rows, of which the extra ones go unused.
    Under DDP the main process trains and every process loads its result.

    Arguments
    ---------
    make_tokenizer : callable
        ``make_tokenizer(**overrides)`` -> SpeechBrain ``SentencePiece``
        (the recipes' ``tokenizer`` partial, which binds ``vocab_size``).

    Returns
    -------
    speechbrain.tokenizers.SentencePiece.SentencePiece
        The trained or loaded tokenizer.

    Example
    -------
    >>> import functools, json, os, tempfile
    >>> from speechbrain.tokenizers.SentencePiece import SentencePiece
    >>> folder = tempfile.mkdtemp()
    >>> manifest = os.path.join(folder, "train.json")
    >>> texts = {f"u{i}": {"text": "dogs are sitting"} for i in range(4)}
    >>> json.dump(texts, open(manifest, "w"))
    >>> make = functools.partial(
    ...     SentencePiece,
    ...     model_dir=folder,
    ...     vocab_size=300,
    ...     annotation_train=manifest,
    ...     annotation_read="text",
    ...     annotation_format="json",
    ... )
    >>> fit_sentencepiece(make).sp.vocab_size() < 300
    True
    """
    # The main process alone may train: a failed attempt on one process
    # would leave the others waiting in SentencePiece's own collectives.
    lowered = run_on_main(_train_sentencepiece, args=[make_tokenizer])
    overrides = {} if lowered is None else {"vocab_size": lowered}
    return make_tokenizer(**overrides)


def _train_sentencepiece(make_tokenizer):
    """Trains the tokenizer, lowering ``vocab_size`` to what SentencePiece
    allows if needed; returns the lowered size, or None if it fitted.
    """
    try:
        make_tokenizer()
        return None
    except RuntimeError as err:
        allowed = re.search(
            r"Vocabulary size too high \((\d+)\).*<= (\d+)", str(err)
        )
        if allowed is None:
            raise
    requested, largest = int(allowed.group(1)), int(allowed.group(2))
    logger.warning(
        "vocab_size %d is more than the training transcripts allow for "
        "SentencePiece: using %d (set --vocab_size to choose another).",
        requested,
        largest,
    )
    make_tokenizer(vocab_size=largest)
    return largest


def datasets_from_hparams(hparams, manifests, label_key):
    """A recipe's data: screened manifests, a tokenizer, the datasets.

    Screens the manifests (:func:`screen_manifests`, with the hparams keys
    ``output_folder``, ``data_folder``, ``on_bad_input`` and
    ``max_audio_seconds``), then tokenises with the pretrained text model's
    own tokenizer (``text_model``) or with SentencePiece (``tokenizer``, a
    partial) trained on the screened training transcripts, and builds the
    datasets (``label_encoder``, ``label_encoder_file``, ``sample_rate``).

    Arguments
    ---------
    hparams : dict
        The loaded recipe hyperparameters.
    manifests : dict
        Split name -> manifest path (``train``, ``valid``, ``test``).
    label_key : str
        The manifests' label field.

    Returns
    -------
    dict
        Split name -> DynamicItemDataset (see :func:`audio_text_datasets`).
    """
    screened = screen_manifests(
        manifests,
        hparams["output_folder"],
        label_key=label_key,
        data_root=hparams["data_folder"],
        on_bad_input=hparams["on_bad_input"],
        max_audio_seconds=hparams["max_audio_seconds"],
    )
    if "tokenizer" in hparams:
        text_to_ids = fit_sentencepiece(hparams["tokenizer"]).sp.encode_as_ids
    else:
        text_to_ids = hparams["text_model"].text_to_ids
    return audio_text_datasets(
        manifests=screened,
        text_to_ids=text_to_ids,
        label_encoder=hparams["label_encoder"],
        label_encoder_file=hparams["label_encoder_file"],
        sample_rate=hparams["sample_rate"],
        label_key=label_key,
    )
