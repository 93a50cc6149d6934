"""TurboClassifier: run an exported Turbo model on audio, with or without
its transcript.

    >>> from speechbrain_turbo.inference import TurboClassifier
    >>> model = TurboClassifier.from_hparams("model_dir")  # doctest: +SKIP
    >>> probs, score, index, label = model.classify_file(
    ...     "speech.wav", text="I told you twice already."
    ... )  # doctest: +SKIP

A model folder comes from ``speechbrain-turbo export`` (see
:mod:`speechbrain_turbo.export`). Audio at any sample rate and channel count
is resampled and averaged to mono, as in training. Without a transcript,
the audio is transcribed by the model folder's ASR model when it has one
(``asr_model``, SpeechBrain's Whisper integration: ``speechbrain-turbo
export --asr_hub``); otherwise, or with ``transcribe=False``, the text
modality is replaced by the fusion's "absent" embedding (the audio-only
path). That embedding is learned only by a model trained with
``modality_dropout``; otherwise it is a fixed zero vector never trained on.

Authors
 * speechbrain-turbo contributors
"""

import csv
import os

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.utils.checkpoints import (
    DEFAULT_SAVE_HOOKS,
    get_default_hook,
    torch_save,
)
from speechbrain.utils.data_utils import batch_pad_right
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.dataio import load_audio
from speechbrain_turbo.errors import InputError
from speechbrain_turbo.export import written_by_export
from speechbrain_turbo.screening import inspect_audio

# The examples' table and files in a model folder (speechbrain_turbo.export).
EXAMPLES_FILE = "examples.csv"
EXAMPLES_FOLDER = "examples"
HUB_PREFIX = "hf://"

logger = get_logger(__name__)


class ModelFolderError(InputError):
    """A model folder that cannot be used, with a one-line message naming
    the file and what to do (the command line shows it without a trace).
    """


class MissingModelFolder(ModelFolderError, FileNotFoundError):
    """A model folder that is not there (and not named as a hub model)."""


def model_source(source):
    """The folder (or, with ``hf://``, the hub name) of a model.

    A model folder holds code (its ``hyperparams.yaml``), so a mistyped or
    not yet exported folder must not turn into a download from whoever owns
    that name on the HuggingFace hub: only ``hf://org/name`` is a hub name.

    Arguments
    ---------
    source : str
        A local folder, or ``hf://org/name``.

    Returns
    -------
    str
        The folder, or the hub name without its prefix.

    Example
    -------
    >>> model_source("hf://org/name")
    'org/name'
    >>> model_source("no/such/folder")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_turbo.inference.MissingModelFolder: No model folder ...
    """
    if source.startswith(HUB_PREFIX):
        return source[len(HUB_PREFIX) :]
    if not os.path.isdir(source):
        raise MissingModelFolder(
            f"No model folder {source}: export one with speechbrain-turbo "
            f"export RUN_FOLDER {source} (a HuggingFace hub model is named "
            f"{HUB_PREFIX}org/name)"
        )
    return source


def _check_model_folder(folder, hparams_file):
    """Refuses, in one line, a folder that is no exported model."""
    path = os.path.join(folder, hparams_file)
    if os.path.isdir(os.path.join(folder, "save")) and not written_by_export(
        path
    ):
        raise ModelFolderError(
            f"{folder} is a training run's folder, not a model: export it "
            f"first (speechbrain-turbo export {folder} MODEL_FOLDER)"
        )
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        state = "empty" if os.path.isfile(path) else "missing"
        raise ModelFolderError(
            f"{path} is {state}: {folder} is no exported model "
            "(speechbrain-turbo export RUN_FOLDER MODEL_FOLDER writes one)"
        )


# Shorter audio is refused: a filterbank frame is 25 ms and Whisper's
# convolutions need a few of them; a tenth of a second is no utterance.
MIN_AUDIO_SECONDS = 0.1


class TurboClassifier(Pretrained):
    """A SpeechBrain ``Pretrained`` interface to a Turbo classifier.

    After each ``classify_*`` / ``encode_batch`` call, ``text_sources``
    says, per item, where the transcript came from: ``given``, ``asr``
    (transcribed here) or ``absent`` (audio only), and ``transcripts``
    holds the text used (None where absent).

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.inference.interfaces.Pretrained``; use
        :meth:`from_hparams`.
    """

    MODULES_NEEDED = ["fusion", "classifier"]
    HPARAMS_NEEDED = ["modalities", "sample_rate", "label_encoder"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.text_sources = []
        self.transcripts = []
        classes = getattr(
            getattr(self.mods.classifier, "w", None), "out_features", None
        )
        if classes is None:
            self.hparams.label_encoder.ignore_len()
        else:
            self.hparams.label_encoder.expect_len(classes)

    @classmethod
    def from_hparams(
        cls,
        source,
        hparams_file="hyperparams.yaml",
        overrides=None,
        savedir=None,
        **kwargs,
    ):
        """Loads a model folder written by ``speechbrain-turbo export``.

        Arguments
        ---------
        source : str
            The model folder. A HuggingFace hub model must be named as one,
            ``hf://org/name``: a path that is not a folder here is refused,
            never looked up on the hub (a model folder is code).
        hparams_file : str
            Its hyperparameters file.
        overrides : dict, optional
            Hyperparameter overrides.
        savedir : str, optional
            Where SpeechBrain collects the files; the model folder itself
            by default.
        **kwargs : dict
            Passed to ``Pretrained.from_hparams`` (e.g. ``run_opts``).

        Returns
        -------
        TurboClassifier
            The loaded classifier, in evaluation mode.
        """
        source = model_source(source)
        overrides = dict(overrides or {})
        overrides.setdefault("model_dir", os.path.abspath(source))
        local = os.path.isdir(source)
        if local:
            _check_model_folder(source, hparams_file)
            savedir = savedir or source
        device = (kwargs.get("run_opts") or {}).get("device", "cpu")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ModelFolderError(
                f"--device {device}: no CUDA device is available here; use "
                "--device cpu"
            )
        try:
            model = super().from_hparams(
                source,
                hparams_file=hparams_file,
                overrides=overrides,
                savedir=savedir,
                **kwargs,
            )
        except Exception as error:
            if not local:
                raise
            logger.debug("Loading %s failed", source, exc_info=True)
            reason = (str(error).strip().splitlines() or [""])[0][:200]
            raise ModelFolderError(
                f"{source}: the model folder does not load "
                f"({type(error).__name__}: {reason}); export it again with "
                "speechbrain-turbo export"
            ) from error
        if local:
            model._check_weights()
        return model

    def _check_weights(self):
        """Every file the pretrainer loads is there and matches its module
        (names and shapes: SpeechBrain loads checkpoints leniently, which
        would leave random weights in place); the label encoder is whole.
        """
        folder = self.hparams.model_dir
        for key, target in self.hparams.pretrainer.loadables.items():
            path = os.path.join(folder, f"{key}.ckpt")
            if not os.path.isfile(path):
                raise ModelFolderError(
                    f"{path} is missing: export the model again"
                )
            # Only what is saved as a state dict (not, e.g., a normaliser's
            # own statistics format).
            if get_default_hook(target, DEFAULT_SAVE_HOOKS) is not torch_save:
                continue
            saved = torch.load(path, map_location="cpu", weights_only=True)
            expected = target.state_dict()
            wrong = sorted(
                set(saved) ^ set(expected)
                | {
                    name
                    for name in set(saved) & set(expected)
                    if saved[name].shape != expected[name].shape
                }
            )
            if wrong:
                raise ModelFolderError(
                    f"{path} does not fit the module {key} of its "
                    f"hyperparams.yaml ({len(wrong)} parameter(s) missing, "
                    f"extra or of another shape, e.g. {wrong[0]}): export "
                    "the model again"
                )
        encoder = self.hparams.label_encoder
        indices = sorted(encoder.ind2lab)
        if len(indices) < 2 or indices != list(range(len(indices))):
            raise ModelFolderError(
                f"{os.path.join(folder, 'label_encoder.ckpt')}: the label "
                f"encoder holds {len(indices)} label(s) with indices "
                f"{indices[:10]}; export the model again"
            )

    @property
    def modalities(self):
        """The model's modalities, e.g. ``["audio", "text"]``."""
        return list(self.hparams.modalities)

    @property
    def labels(self):
        """The class labels, in the order of the probabilities."""
        encoder = self.hparams.label_encoder
        return [encoder.ind2lab[i] for i in range(len(encoder))]

    @property
    def display_names(self):
        """The labels as people read them, in the order of ``labels``: the
        model's ``label_names`` (e.g. IEMOCAP's ``ang`` -> ``angry``), else
        the labels themselves.
        """
        names = getattr(self.hparams, "label_names", None) or {}
        return [str(names.get(label, label)) for label in self.labels]

    @property
    def examples(self):
        """``(audio file, transcript)`` pairs exported with the model
        (``speechbrain-turbo export --examples N``); empty when none.
        """
        table = os.path.join(self.hparams.model_dir, EXAMPLES_FILE)
        if not os.path.exists(table):
            return []
        folder = os.path.realpath(
            os.path.join(self.hparams.model_dir, EXAMPLES_FOLDER)
        )
        examples = []
        with open(table, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                path = os.path.realpath(
                    os.path.join(self.hparams.model_dir, row["file"])
                )
                # Only files of the folder's own examples/ are ever shown.
                if os.path.dirname(path) != folder:
                    raise ValueError(
                        f"{table}, line {line}: {row['file']!r} is not a file "
                        f"of the model folder's {EXAMPLES_FOLDER}/: re-export "
                        "the model"
                    )
                examples.append((path, row["text"]))
        return examples

    def text_to_ids(self, text):
        """Token ids of a transcript, as the training data pipeline made.

        Arguments
        ---------
        text : str
            A transcript.

        Returns
        -------
        list of int
            The token ids.
        """
        if hasattr(self.hparams, "text_tokenizer"):
            return self.hparams.text_tokenizer.encode_as_ids(text)
        return self.hparams.text_model.text_to_ids(text)

    def load_file(self, path):
        """Reads a file as a mono waveform at the model's sample rate.

        Arguments
        ---------
        path : str
            Any audio file soundfile reads.

        Returns
        -------
        torch.Tensor
            ``[T]`` waveform.
        """
        # Training's loader, not Pretrained.load_audio: the model sees the
        # preprocessing it was trained with.
        return load_audio(path, self.hparams.sample_rate)

    def screened_file(self, path):
        """Reads a file after the checks the command line and the web page
        share: a readable, complete audio file, at least
        ``MIN_AUDIO_SECONDS`` and at most the model's ``max_audio_seconds``
        long, with finite samples.

        Arguments
        ---------
        path : str
            Any audio file.

        Returns
        -------
        wav : torch.Tensor or None
            ``[T]`` waveform, None when the file cannot be used.
        problem : tuple of str or None
            ``(reason, what to do)``, None when the file can be used.
        """
        problem, seconds = inspect_audio(path)
        limit = self.max_audio_seconds
        if problem is None and seconds < MIN_AUDIO_SECONDS:
            problem = (
                f"audio {path!r} lasts {seconds:.3f} s, less than the "
                f"{MIN_AUDIO_SECONDS:g} s needed",
                "record or upload a longer clip",
            )
        elif problem is None and limit is not None and seconds > limit:
            problem = (
                f"audio {path!r} lasts {seconds:.1f} s, more than "
                f"max_audio_seconds={limit:g}",
                f"this model accepts at most {limit:g} s: cut it into "
                "shorter clips",
            )
        if problem is not None:
            return None, problem
        wav = self.load_file(path)
        if not torch.isfinite(wav).all():
            return None, (
                f"audio {path!r} holds samples that are not finite numbers "
                "(NaN or infinity)",
                "re-export it from its source",
            )
        return wav, None

    @property
    def max_audio_seconds(self):
        """Longest audio training accepted (None: no limit recorded)."""
        return getattr(self.hparams, "max_audio_seconds", None)

    @property
    def has_asr(self):
        """Whether the model folder names an ASR model for missing text."""
        return getattr(self.hparams, "asr_model", None) is not None

    def transcribe_batch(self, wavs, wav_lens=None):
        """Transcribes audio with the model folder's Whisper model.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths.

        Returns
        -------
        list of str
            One transcript per item.
        """
        from speechbrain.decoders.seq2seq import S2SWhisperGreedySearcher

        if not self.has_asr:
            raise ValueError(
                "This model folder has no asr_model: export it with "
                "--asr_hub (e.g. openai/whisper-small) to transcribe"
            )
        asr = self.hparams.asr_model
        config = asr.model.config
        # Whisper reads 30 s windows of max_source_positions frames and
        # writes at most max_target_positions tokens (a few are prompt).
        searcher = S2SWhisperGreedySearcher(
            asr,
            min_decode_ratio=0.0,
            max_decode_ratio=(config.max_target_positions - 4)
            / config.max_source_positions,
        )
        wavs = wavs.to(self.device).float()
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0])
        with torch.no_grad():
            encoded = asr.forward_encoder(asr._get_mel(wavs))
            hypotheses = searcher(encoded, wav_lens.to(self.device))[0]
        return [
            asr.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            for tokens in hypotheses
        ]

    def encode_batch(self, wavs, wav_lens=None, texts=None, transcribe=True):
        """Pooled embedding of each modality, before fusion.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms at the model's sample rate.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths (None: no padding).
        texts : list of (str or None), optional
            One transcript per item. None (or an empty string) means no
            transcript: the ASR model transcribes the audio if the model
            has one and ``transcribe`` is True, else the fusion's "absent"
            embedding stands in.
        transcribe : bool
            Use the ASR model for missing transcripts (when there is one).

        Returns
        -------
        dict
            Modality -> ``[B, D]`` embeddings (rows without text hold the
            absent embedding).
        """
        if wavs.dim() == 1:
            wavs = wavs.unsqueeze(0)
        wavs = wavs.to(self.device).float()
        batch = wavs.shape[0]
        if wav_lens is None:
            wav_lens = torch.ones(batch)
        wav_lens = wav_lens.to(self.device).float()
        texts = list(texts) if texts is not None else [None] * batch
        if len(texts) != batch:
            raise ValueError(f"Got {batch} waveforms but {len(texts)} texts")
        sources = ["given" if t and t.strip() else "absent" for t in texts]
        missing = [
            row for row, source in enumerate(sources) if source == "absent"
        ]
        if (
            missing
            and transcribe
            and self.has_asr
            and "text" in self.modalities
        ):
            transcripts = self.transcribe_batch(
                wavs[missing], wav_lens[missing]
            )
            for row, transcript in zip(missing, transcripts):
                texts[row], sources[row] = transcript, "asr"
        ids = [self.text_to_ids(t) if t and t.strip() else [] for t in texts]
        # A transcript without tokens (e.g. empty ASR output) is no text.
        self.text_sources = [s if i else "absent" for s, i in zip(sources, ids)]
        self.transcripts = [t if i else None for t, i in zip(texts, ids)]

        embeddings = {}
        with torch.no_grad():
            if "audio" in self.modalities:
                embeddings["audio"] = self.mods.audio_encoder(wavs, wav_lens)
            present = [row for row, row_ids in enumerate(ids) if row_ids]
            if "text" in self.modalities and present:
                tokens, lengths = batch_pad_right(
                    [torch.LongTensor(ids[row]) for row in present]
                )
                encoded = self.mods.text_encoder(
                    tokens.to(self.device), lengths.to(self.device)
                )
                text = self.mods.fusion.absent["text"].expand(batch, -1)
                text = text.clone().to(encoded.dtype)
                text[present] = encoded
                embeddings["text"] = text
        if not embeddings:
            raise ValueError(
                "This model needs text and none was given: pass texts"
            )
        return embeddings

    def classify_batch(self, wavs, wav_lens=None, texts=None, transcribe=True):
        """Classifies a batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms at the model's sample rate.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths.
        texts : list of (str or None), optional
            Transcripts (see :meth:`encode_batch`).
        transcribe : bool
            Use the ASR model for missing transcripts (when there is one).

        Returns
        -------
        probabilities : torch.Tensor
            ``[B, C]`` class probabilities.
        score : torch.Tensor
            ``[B]`` the highest probability.
        index : torch.Tensor
            ``[B]`` its class index.
        labels : list of str
            Its label.
        """
        embeddings = self.encode_batch(wavs, wav_lens, texts, transcribe)
        with torch.no_grad():
            logits = self.mods.classifier(self.mods.fusion(embeddings))
            logits = logits.reshape(logits.shape[0], -1)
            probabilities = torch.softmax(logits.float(), dim=-1)
        score, index = probabilities.max(dim=-1)
        labels = self.hparams.label_encoder.decode_torch(index.cpu())
        return probabilities, score, index, labels

    def classify_file(self, path, text=None, transcribe=True):
        """Classifies one file, with its transcript if there is one.

        Arguments
        ---------
        path : str
            Audio file (any sample rate, any number of channels).
        text : str, optional
            Its transcript. None: transcribed by the ASR model if the model
            has one (and ``transcribe``), else the audio-only path.
        transcribe : bool
            Use the ASR model for a missing transcript.

        Returns
        -------
        tuple
            As :meth:`classify_batch`, for a batch of one.
        """
        wav = self.load_file(path)
        return self.classify_batch(
            wav.unsqueeze(0), texts=[text], transcribe=transcribe
        )

    def forward(self, wavs, wav_lens=None, texts=None):
        """Same as :meth:`classify_batch`.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` waveforms.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths.
        texts : list of (str or None), optional
            Transcripts.

        Returns
        -------
        tuple
            As :meth:`classify_batch`.
        """
        return self.classify_batch(wavs, wav_lens, texts)
