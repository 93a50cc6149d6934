"""Pretrained HuggingFace speech and text encoders for Turbo.

Thin subclasses of SpeechBrain's HuggingFace lobes that add what the twin
pass needs: the encoder's dropout rates set from hparams (they make the two
views differ), a deterministic front end the two views share, a text
encoder that takes token ids plus relative lengths, so that it fits
:class:`speechbrain_turbo.models.ModalityEncoder` like any other encoder,
and Whisper's encoder on the batch's own length instead of 30 s.

Authors
 * speechbrain-turbo contributors
"""

import contextlib
import inspect

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.integrations.huggingface.huggingface import (
    HFTransformersInterface,
    make_padding_masks,
)
from speechbrain.integrations.huggingface.textencoder import TextEncoder
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.models import WeightedLayerSum

logger = get_logger(__name__)

# The config attributes of HuggingFace's layer drop (wav2vec 2.0 family,
# Whisper).
LAYER_DROP_ATTRIBUTES = ("layerdrop", "encoder_layerdrop")


def apply_config_overrides(config, overrides, source):
    """Sets HuggingFace config attributes, refusing names the config lacks.

    Arguments
    ---------
    config : transformers.PretrainedConfig
        The model's config, before the model is built from it.
    overrides : dict or None
        Attribute name -> value, e.g. ``{"hidden_dropout": 0.1}``.
    source : str
        The model's hub name or folder, named in errors.

    Returns
    -------
    transformers.PretrainedConfig
        The same config, modified.

    Example
    -------
    >>> from transformers import BertConfig
    >>> config = apply_config_overrides(
    ...     BertConfig(), {"hidden_dropout_prob": 0.2}, "bert"
    ... )
    >>> config.hidden_dropout_prob
    0.2
    """
    for name, value in (overrides or {}).items():
        if not hasattr(config, name):
            dropouts = sorted(
                key
                for key in config.to_dict()
                if "drop" in key or key.endswith("_prob")
            )
            raise ValueError(
                f"{source}: its {type(config).__name__} has no attribute "
                f"{name!r} (set in config_overrides). Its dropout-like "
                f"attributes are {dropouts}"
            )
        setattr(config, name, value)
    if overrides:
        logger.info("%s: config overrides %s", source, dict(overrides))
    # Layer drop skips the same layers in both Turbo views (one draw per
    # doubled batch) and leaves their parameters without gradients under
    # DDP: it stays off, whatever the pretrained config says.
    for name in LAYER_DROP_ATTRIBUTES:
        if (overrides or {}).get(name, 0) > 0:
            raise ValueError(
                f"{source}: config_overrides sets {name}={overrides[name]}; "
                "layer drop must be 0 here (it would skip the same layers "
                "in both Turbo views): remove it from config_overrides"
            )
        if getattr(config, name, 0) > 0:
            logger.info(
                "%s: %s %s of the pretrained config set to 0",
                source,
                name,
                getattr(config, name),
            )
            setattr(config, name, 0.0)
    return config


class ConfigOverridesMixin:
    """Lets a SpeechBrain HuggingFace lobe take ``config_overrides``, and
    optionally recompute activations in the backward pass.

    The lobe's ``__init__`` calls ``override_config`` before the model is
    built; the subclass sets ``_config_overrides`` and ``_source`` before
    calling it (plain attributes may be set before ``Module.__init__``).
    """

    def enable_gradient_checkpointing(self):
        """Stores fewer activations, recomputing them in backward.

        Trades about a third more compute for much less memory, which the
        doubled batch of the twin pass needs. Non-reentrant, so it works
        under DDP (SpeechBrain's lobes switch it off for the reentrant kind).
        """
        options = {"use_reentrant": False}
        # transformers renamed the method (and its argument) in 5.x.
        if hasattr(self.model, "activation_checkpointing_enable"):
            self.model.activation_checkpointing_enable(
                activation_checkpointing_kwargs=options
            )
        else:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=options
            )

    def disable_gradient_checkpointing(self):
        """Stores the activations again (undoes the method above)."""
        if hasattr(self.model, "activation_checkpointing_disable"):
            self.model.activation_checkpointing_disable()
        else:
            self.model.gradient_checkpointing_disable()

    def override_config(self, config):
        """Applies ``config_overrides`` (see :func:`apply_config_overrides`).

        Arguments
        ---------
        config : transformers.PretrainedConfig
            The loaded config.

        Returns
        -------
        transformers.PretrainedConfig
            The overridden config.
        """
        return apply_config_overrides(
            config, self._config_overrides, self._source
        )


class HFSpeechEncoder(ConfigOverridesMixin, Wav2Vec2):
    """A wav2vec 2.0 / HuBERT / WavLM encoder with settable dropout.

    As SpeechBrain's ``Wav2Vec2`` lobe (which loads any of the three through
    ``AutoModel``), plus ``config_overrides`` applied before the model is
    built, and a frozen CNN feature encoder that stores no activations for
    backward (HuggingFace's ``freeze_feature_encoder``).

    Arguments
    ---------
    source : str
        HuggingFace hub name or local folder.
    save_path : str
        Where downloaded weights are cached.
    config_overrides : dict, optional
        Config attributes to set, e.g. ``hidden_dropout``,
        ``attention_dropout``, ``feat_proj_dropout`` (layer drop is
        always 0).
    freeze_feature_extractor : bool
        Freeze the CNN feature encoder (the usual fine-tuning setup).
    gradient_checkpointing : bool
        Recompute the transformer's activations in backward (less memory).
    share_front_end : bool
        With a frozen CNN, run it once for both Turbo views (see
        :attr:`shares_run_once`). False runs it once per view, as
        two plain forwards would: for measuring what the sharing saves.
    **kwargs
        Passed to ``Wav2Vec2`` (``freeze``, ``output_norm``...).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_turbo.random_hf_models import save_random_speech_model
    >>> folder = save_random_speech_model(tempfile.mkdtemp())
    >>> encoder = HFSpeechEncoder(
    ...     folder, tempfile.mkdtemp(), config_overrides={"hidden_dropout": 0.1}
    ... )
    >>> encoder(torch.randn(2, 8000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 23, 16])
    """

    def __init__(
        self,
        source,
        save_path,
        config_overrides=None,
        freeze_feature_extractor=True,
        gradient_checkpointing=False,
        share_front_end=True,
        **kwargs,
    ):
        # Read by override_config, called by the parent's __init__.
        self._config_overrides = dict(config_overrides or {})
        self._source = source
        super().__init__(
            source,
            save_path,
            freeze_feature_extractor=freeze_feature_extractor,
            **kwargs,
        )
        if freeze_feature_extractor and not self.freeze:
            # What wav2vec2's freeze_feature_encoder() does (HubERT lacks
            # it): the CNN then stops asking for its input's gradient.
            self.model.feature_extractor._freeze_parameters()
        # DDP stops on a trainable parameter that gets no gradient: the
        # SpecAugment mask embedding only gets one when time steps are
        # masked (SpeechBrain's lobe turns SpecAugment off by default).
        config = self.model.config
        mask_embedding = getattr(self.model, "masked_spec_embed", None)
        masks_time = config.apply_spec_augment and config.mask_time_prob > 0
        if mask_embedding is not None and not masks_time:
            mask_embedding.requires_grad_(False)
        if gradient_checkpointing:
            self.enable_gradient_checkpointing()
        self.share_front_end = share_front_end

    @property
    def shares_run_once(self):
        """True when the CNN is frozen (and sharing is on): it then runs
        once (:meth:`run_once`) and the rest once per Turbo view
        (:meth:`run_per_view`; see
        :meth:`speechbrain_turbo.models.ModalityEncoder.forward`).
        """
        return (
            self.share_front_end
            and self.freeze_feature_extractor
            and not self.freeze
        )

    @property
    def _no_adapter(self):
        """``add_adapter=False`` where the model's frame-mask method takes
        it: the mask of the CNN's frames, before any adapter shortens them
        (as HuggingFace's own forward asks for it; HuBERT has no adapter).
        """
        method = self.model._get_feature_vector_attention_mask
        if "add_adapter" in inspect.signature(method).parameters:
            return {"add_adapter": False}
        return {}

    def run_once(self, wav, wav_lens=None):
        """The frozen CNN's output, computed once for both Turbo views.

        The CNN has no dropout, so both views would compute the same thing;
        :class:`speechbrain_turbo.models.ModalityEncoder` repeats this
        output instead (the rest of the encoder, :meth:`run_per_view`,
        runs on both views).

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveforms.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths.

        Returns
        -------
        features : torch.Tensor
            ``[B, T', C]`` CNN features.
        frame_mask : torch.Tensor or None
            ``[B, T']`` True on real frames (as HuggingFace computes it).
        """
        padding_mask = make_padding_masks(wav, wav_len=wav_lens)
        if self.normalize_wav:
            wav = F.layer_norm(wav, wav.shape[1:])
        with torch.no_grad():
            features = self.model.feature_extractor(wav).transpose(1, 2)
        frame_mask = None
        if padding_mask is not None:
            frame_mask = self.model._get_feature_vector_attention_mask(
                features.shape[1], padding_mask, **self._no_adapter
            )
        return features, frame_mask

    def run_per_view(self, features, frame_mask=None):
        """The rest of the encoder (projection, transformer), with dropout.

        As the HuggingFace model's ``forward`` after its CNN.

        Arguments
        ---------
        features : torch.Tensor
            ``[B, T', C]`` from :meth:`run_once` (possibly repeated).
        frame_mask : torch.Tensor, optional
            ``[B, T']`` True on real frames.

        Returns
        -------
        torch.Tensor
            ``[B, T', D]`` hidden states.
        """
        projected = self.model.feature_projection(features)
        hidden = projected[0] if isinstance(projected, tuple) else projected
        hidden = self.model._mask_hidden_states(
            hidden, attention_mask=frame_mask
        )
        hidden = self.model.encoder(hidden, attention_mask=frame_mask)[0]
        if getattr(self.model, "adapter", None) is not None:
            hidden = self.model.adapter(hidden)
        if self.output_norm:
            hidden = F.layer_norm(hidden, hidden.shape[1:])
        return hidden


class HFTextEncoder(ConfigOverridesMixin, TextEncoder):
    """A pretrained text encoder (e.g. BERT or RoBERTa) fed with token ids.

    The data pipeline tokenises with :meth:`text_to_ids` (the model's own
    tokenizer); ``forward`` takes the padded ids and SpeechBrain's relative
    lengths and returns the last hidden states.

    Arguments
    ---------
    source : str
        HuggingFace hub name or local folder.
    save_path : str
        Where downloaded weights are cached.
    config_overrides : dict, optional
        Config attributes to set, e.g. ``hidden_dropout_prob``,
        ``attention_probs_dropout_prob``.
    freeze : bool
        If True, the encoder is not trained.
    gradient_checkpointing : bool
        Recompute the transformer's activations in backward (less memory).
    frozen_layers : int
        The embeddings and the first ``frozen_layers`` layers are not
        trained and run without dropout (the two Turbo views get the same
        output from them); backward stops above them. They run once per
        view: sharing them would save about 4 % of a base-size step
        (``bench/text_frozen_layers.py``).
    **kwargs
        Passed to SpeechBrain's ``TextEncoder`` (``num_layers``...).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_turbo.random_hf_models import save_random_text_model
    >>> folder = save_random_text_model(tempfile.mkdtemp(), ["hello there"])
    >>> encoder = HFTextEncoder(folder, tempfile.mkdtemp())
    >>> ids = torch.tensor([encoder.text_to_ids("Hello there!")])
    >>> encoder(ids, torch.ones(1)).shape[-1]
    16
    """

    def __init__(
        self,
        source,
        save_path,
        config_overrides=None,
        freeze=False,
        gradient_checkpointing=False,
        frozen_layers=0,
        **kwargs,
    ):
        self._config_overrides = dict(config_overrides or {})
        self._source = source
        super().__init__(source, save_path, freeze=freeze, **kwargs)
        layers = self.model.encoder.layer
        if not 0 <= frozen_layers <= len(layers):
            raise ValueError(
                f"{source}: frozen_layers must be 0 to {len(layers)} (the "
                f"kept layers), got {frozen_layers}"
            )
        self.frozen_parts = []
        if frozen_layers:
            self.frozen_parts = [self.model.embeddings, *layers[:frozen_layers]]
        for part in self.frozen_parts:
            part.requires_grad_(False)
        # The [CLS] pooler is never used (the hidden states are pooled
        # downstream): frozen, since DDP stops on a trainable parameter
        # that gets no gradient. Kept in the state dict for old checkpoints.
        pooler = getattr(self.model, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(False)
        if gradient_checkpointing:
            self.enable_gradient_checkpointing()

    def train(self, mode=True):
        """Sets training mode, keeping the frozen layers without dropout.

        Arguments
        ---------
        mode : bool
            Training (True) or evaluation (False) mode.

        Returns
        -------
        HFTextEncoder
            Itself.
        """
        super().train(mode)
        for part in self.frozen_parts:
            part.train(False)
        return self

    def text_to_ids(self, text):
        """Token ids of one transcript, with the model's special tokens,
        truncated to the model's maximum length.

        Arguments
        ---------
        text : str
            A transcript.

        Returns
        -------
        list of int
            The token ids.
        """
        max_length = self.config.max_position_embeddings
        # RoBERTa-style position ids start after the padding index.
        padding_idx = getattr(self.model.embeddings, "padding_idx", None)
        if padding_idx is not None:
            max_length -= padding_idx + 1
        max_length = min(self.tokenizer.model_max_length, max_length)
        return self.tokenizer(text, truncation=True, max_length=max_length)[
            "input_ids"
        ]

    def forward(self, token_ids, lengths=None):
        """Last hidden states of a padded batch of token ids.

        Arguments
        ---------
        token_ids : torch.Tensor
            ``[B, L]`` ids; padding may hold any id.
        lengths : torch.Tensor, optional
            ``[B]`` relative lengths in [0, 1]; None means no padding.

        Returns
        -------
        torch.Tensor
            ``[B, L, D]`` hidden states.
        """
        if lengths is None:
            mask = torch.ones_like(token_ids, dtype=torch.bool)
        else:
            tokens = torch.round(lengths * token_ids.shape[1])
            mask = length_to_mask(tokens, max_len=token_ids.shape[1]).bool()
        # Padding gets the model's pad id: RoBERTa derives its position ids
        # from which tokens are padding.
        pad_id = self.tokenizer.pad_token_id or 0
        token_ids = token_ids.masked_fill(~mask, pad_id)
        # Frozen: no graph. Otherwise the caller's grad mode holds (none
        # under SpeechBrain's evaluation or inference no_grad).
        with torch.no_grad() if self.freeze else contextlib.nullcontext():
            return self.model(
                input_ids=token_ids, attention_mask=mask.long()
            ).last_hidden_state


def _hidden_states(layer_output):
    """A transformer layer's hidden states (transformers 4.x layers return
    a tuple, 5.x a tensor).
    """
    if isinstance(layer_output, tuple):
        return layer_output[0]
    return layer_output


class HFWhisperEncoder(ConfigOverridesMixin, HFTransformersInterface):
    """The encoder of any Whisper model (``openai/whisper-*`` or a folder),
    on the batch's own length, with settable dropout.

    Whisper was trained on 30-s windows, and HuggingFace's encoder (like
    SpeechBrain's ``Whisper`` lobe) pads every clip to 30 s: on clips of a
    few seconds most of the compute goes to silence. Here the log-Mel
    features cover the batch's longest clip only and the positional
    embeddings are cut to its frame count; the encoder layers are
    Whisper's own. The pooled outputs then differ slightly from a 30-s
    encoding (the frames no longer attend to the silence after the clip);
    ``pad_to_30s=True`` encodes as Whisper does, for comparison.

    The convolutional front end has no dropout: the two Turbo views share
    its output (:attr:`shares_run_once`), trainable or not. The decoder is
    dropped after loading.

    Arguments
    ---------
    source : str
        HuggingFace hub name or local folder of a Whisper model.
    save_path : str
        Where downloaded weights are cached.
    config_overrides : dict, optional
        Config attributes to set, e.g. ``dropout``, ``attention_dropout``,
        ``activation_dropout`` (layer drop is always 0).
    freeze : bool
        If True, the encoder is not trained.
    freeze_feature_extractor : bool
        Freeze the convolutional front end only.
    gradient_checkpointing : bool
        Recompute the layers' activations in backward (less memory).
    share_front_end : bool
        Run the front end once for both Turbo views (False: once per view,
        for measuring what the sharing saves).
    pad_to_30s : bool
        Encode 30-s windows as Whisper does, then keep the batch's frames.
    extra_silence_seconds : float
        Silence appended to the batch before encoding (its frames are not
        returned): the clip's last frames then see some of the silence that
        follows every clip in Whisper's training. More agreement with the
        30-s encoding, more compute.
    num_layers : int, optional
        Keep only the first ``num_layers`` layers (the rest are dropped, as
        SpeechBrain's ``TextEncoder`` does): the output is then that
        layer's, without the final layer norm, which belongs to the last
        layer. Middle layers often carry more paralinguistic information.
    layer_weighted_sum : bool
        Return a learned weighted sum of every kept layer's output and of
        the layers' input (:class:`speechbrain_turbo.models.WeightedLayerSum`,
        SUPERB's downstream recipe) instead of the last kept layer's.
    frozen_layers : int
        The first ``frozen_layers`` encoder layers (and the front end) are
        not trained and run without dropout in :meth:`run_once`: once per
        batch, without a graph, their output shared by the two Turbo views,
        which then differ by the dropout of the layers above only. Cuts the
        cost of a step when the lower layers need no fine-tuning.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_turbo.random_hf_models import save_random_whisper_model
    >>> folder = save_random_whisper_model(tempfile.mkdtemp())
    >>> encoder = HFWhisperEncoder(folder, tempfile.mkdtemp())
    >>> encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 50, 16])
    """

    def __init__(
        self,
        source,
        save_path,
        config_overrides=None,
        freeze=False,
        freeze_feature_extractor=False,
        gradient_checkpointing=False,
        share_front_end=True,
        pad_to_30s=False,
        extra_silence_seconds=0.0,
        num_layers=None,
        layer_weighted_sum=False,
        frozen_layers=0,
    ):
        self._config_overrides = dict(config_overrides or {})
        self._source = source
        super().__init__(source, save_path=save_path, freeze=freeze)
        # Only the encoder is used: the decoder's weights are let go.
        self.model = self.model.get_encoder()
        layers = len(self.model.layers)
        if num_layers is not None and not 1 <= num_layers <= layers:
            raise ValueError(
                f"{source}: num_layers must be 1 to {layers} (its encoder "
                f"layers), got {num_layers}"
            )
        self.truncated = num_layers is not None and num_layers < layers
        if self.truncated:
            del self.model.layers[num_layers:]
            # The final norm belongs to the last layer's output.
            self.model.layer_norm.requires_grad_(False)
        kept = len(self.model.layers)
        if not 0 <= frozen_layers <= kept:
            raise ValueError(
                f"{source}: frozen_layers must be 0 to {kept} (the kept "
                f"encoder layers), got {frozen_layers}"
            )
        self.frozen_layers = frozen_layers
        if frozen_layers:
            freeze_feature_extractor = True
            for layer in self.model.layers[:frozen_layers]:
                layer.requires_grad_(False)
        self.load_feature_extractor(source, save_path)
        extractor = self.feature_extractor
        filters = torch.as_tensor(extractor.mel_filters, dtype=torch.float32)
        if filters.shape[0] != extractor.feature_size:
            filters = filters.T  # [n_mels, n_fft // 2 + 1]
        self.register_buffer("mel_filters", filters, persistent=False)
        self.n_fft, self.hop_length = extractor.n_fft, extractor.hop_length
        self.window_samples = extractor.n_samples
        self.freeze_feature_extractor = freeze_feature_extractor
        if freeze_feature_extractor:
            for conv in (self.model.conv1, self.model.conv2):
                conv.requires_grad_(False)
        if gradient_checkpointing:
            self.enable_gradient_checkpointing()
        self.share_front_end = share_front_end
        self.pad_to_30s = pad_to_30s
        self.extra_silence = int(
            extra_silence_seconds * extractor.sampling_rate
        )
        # Two convolutions, the second of stride 2: samples per output frame.
        self.samples_per_frame = self.hop_length * 2
        self.layer_sum = None
        if layer_weighted_sum:
            self.layer_sum = WeightedLayerSum(len(self.model.layers) + 1)

    def train(self, mode=True):
        """Sets training mode, keeping the frozen layers without dropout.

        Arguments
        ---------
        mode : bool
            Training (True) or evaluation (False) mode.

        Returns
        -------
        HFWhisperEncoder
            Itself.
        """
        super().train(mode)
        for layer in self.model.layers[: self.frozen_layers]:
            layer.train(False)
        return self

    @property
    def shares_run_once(self):
        """True when sharing is on: the log-Mel features, the convolutions
        and the frozen layers have no dropout, so they run once
        (:meth:`run_once`) and the rest once per Turbo view
        (:meth:`run_per_view`).
        """
        return self.share_front_end

    def log_mel(self, wav):
        """Whisper's log-Mel features of a padded batch, per utterance
        scaled as Whisper's feature extractor does.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` 16 kHz waveforms, zero-padded.

        Returns
        -------
        torch.Tensor
            ``[B, n_mels, T // hop_length]`` features.
        """
        window = torch.hann_window(self.n_fft, device=wav.device)
        stft = torch.stft(
            wav.float(),
            self.n_fft,
            self.hop_length,
            window=window,
            return_complex=True,
        )
        power = stft[..., :-1].abs() ** 2
        log_spec = torch.clamp(self.mel_filters @ power, min=1e-10).log10()
        # The floor is 8 (log10 units) below each utterance's own peak.
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0

    def run_once(self, wav, wav_lens=None):
        """Log-Mel features, the two convolutions and the frozen layers (no
        dropout).

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths (unused: Whisper masks no frame).

        Returns
        -------
        features : torch.Tensor
            ``[B, T', D]``, one frame per 20 ms of the batch's length (1500
            frames with ``pad_to_30s``); with frozen layers, the last frozen
            layer's output, or with ``layer_weighted_sum`` every frozen
            layer's input and output, ``[B, T', frozen_layers + 1, D]``.
        frame_mask : torch.Tensor or None
            None, or where silence was appended (``pad_to_30s``,
            ``extra_silence_seconds``) ``[B, T']``, True on the frames of
            the batch's own length (the ones :meth:`run_per_view`
            returns). Whisper's layers attend to every frame.
        """
        samples = wav.shape[1]
        # Whole output frames: a multiple of the two convolutions' hop.
        kept = -(-samples // self.samples_per_frame)
        if samples > self.window_samples:
            raise ValueError(
                f"{self._source}: Whisper's encoder takes at most "
                f"{self.window_samples / 16000:.0f} s of audio, got a batch "
                f"of {samples / 16000:.1f} s: set max_audio_seconds to 30 "
                "or less"
            )
        if self.pad_to_30s:
            target = self.window_samples
        else:
            target = samples + self.extra_silence
            target = (
                -(-target // self.samples_per_frame) * self.samples_per_frame
            )
            target = min(target, self.window_samples)
        wav = F.pad(wav, (0, target - samples))
        frozen = self.freeze or self.freeze_feature_extractor
        with torch.no_grad() if frozen else contextlib.nullcontext():
            mel = self.log_mel(wav).to(self.model.conv1.weight.dtype)
            hidden = F.gelu(self.model.conv1(mel))
            hidden = F.gelu(self.model.conv2(hidden)).transpose(1, 2)
        if self.frozen_layers:
            hidden = self._run_frozen_layers(hidden)
        frame_mask = None
        if hidden.shape[1] > kept:
            frame_mask = torch.zeros(
                hidden.shape[0], hidden.shape[1], dtype=torch.bool
            )
            frame_mask[:, :kept] = True
        return hidden, frame_mask

    def _run_frozen_layers(self, features):
        """Positional embeddings and the frozen layers, without dropout or
        graph; with a layer sum, every frozen layer's input and output
        stacked on dim 2.
        """
        encoder = self.model
        with torch.no_grad():
            hidden = (
                features + encoder.embed_positions.weight[: features.shape[1]]
            )
            outputs = [hidden]
            for layer in encoder.layers[: self.frozen_layers]:
                outputs.append(hidden := _hidden_states(layer(hidden, None)))
        if self.layer_sum is None:
            return hidden
        return torch.stack(outputs, dim=2)

    def run_per_view(self, features, frame_mask=None):
        """Positional embeddings (cut to the frame count), dropout and the
        encoder layers, as Whisper's encoder after its convolutions.

        Arguments
        ---------
        features : torch.Tensor
            From :meth:`run_once` (possibly repeated).
        frame_mask : torch.Tensor, optional
            From :meth:`run_once`: the frames to return (None: all).

        Returns
        -------
        torch.Tensor
            ``[B, T', D]`` hidden states: the frames of the batch's own
            length only.
        """
        encoder = self.model
        frames = features.shape[1]
        with torch.no_grad() if self.freeze else contextlib.nullcontext():
            if self.frozen_layers:
                # Stacked when the layer sum needs every frozen output.
                stacked = features.dim() == 4
                outputs = list(features.unbind(2)) if stacked else [features]
                hidden = outputs[-1]
            else:
                hidden = features + encoder.embed_positions.weight[:frames]
                hidden = F.dropout(
                    hidden, p=encoder.dropout, training=self.training
                )
                outputs = [hidden]
            for layer in encoder.layers[self.frozen_layers :]:
                hidden = _hidden_states(layer(hidden, None))
                outputs.append(hidden)
            if not self.truncated:
                outputs[-1] = hidden = encoder.layer_norm(hidden)
        if self.layer_sum is not None:
            hidden = self.layer_sum(torch.stack(outputs, dim=2))
        if frame_mask is not None:
            hidden = hidden[:, : int(frame_mask[0].sum())]
        return hidden

    def forward(self, wav, wav_lens=None):
        """Encoder hidden states of a batch of waveforms.

        Arguments
        ---------
        wav : torch.Tensor
            ``[B, T]`` waveforms at 16 kHz.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths.

        Returns
        -------
        torch.Tensor
            ``[B, T', D]`` hidden states, one frame per 20 ms of the batch.
        """
        features, frame_mask = self.run_once(wav, wav_lens)
        return self.run_per_view(features, frame_mask)
