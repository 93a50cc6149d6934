"""Modules of a Turbo classifier: per-modality encoders, heads and fusion.

A modality's branch is a :class:`ModalityEncoder`: a deterministic front end
(features, no dropout), an encoder with dropout on its hidden layers, and a
pooling over time to one ``[B, D]`` vector. ``TurboBrain`` runs the front end
once per batch and the dropout-bearing part on the doubled batch, so every
encoder plugged in here must keep its dropout after the front end.

Authors
 * speechbrain-turbo contributors
"""

import inspect

import torch
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask

from speechbrain_turbo.twin_pass import twin_pass

try:  # SpeechBrain 1.1.2 and newer
    from speechbrain.utils.callchains import lengths_arg_name
except ImportError:  # earlier releases and sources

    def lengths_arg_name(func):
        """The name of ``func``'s relative-lengths argument (``lengths`` or
        ``wav_lens``, as HuggingFace lobes call it), or None: what
        SpeechBrain 1.1.2's ``speechbrain.utils.callchains`` provides.
        """
        spec = inspect.getfullargspec(func)
        names = spec.args + spec.kwonlyargs
        return next((n for n in ("lengths", "wav_lens") if n in names), None)


class ModalityEncoder(torch.nn.Module):
    """Front end -> encoder -> pooling, for one modality.

    Arguments
    ---------
    encoder : torch.nn.Module
        Maps features to ``[B, T, D]`` hidden states. Must hold the dropout
        that makes the two Turbo views differ.
    frontend : torch.nn.Module, optional
        Deterministic features (no dropout), computed once and shared by the
        two views.

    Both get the relative lengths when their ``forward`` takes a ``lengths``
    or ``wav_lens`` argument, as in SpeechBrain's ``LengthsCapableSequential``.
    pooling : torch.nn.Module, optional
        ``pooling(h, lengths)`` -> ``[B, 1, D]`` or ``[B, D]``. Defaults to
        :class:`MaskedStatisticsPooling` (mean over the unpadded frames).
        ``torch.nn.Identity()`` for an encoder that pools itself (e.g.
        SpeechBrain's ECAPA-TDNN).
    augment : torch.nn.Module, optional
        Applied to the front end's features in training only (e.g.
        SpeechBrain's ``SpectrogramDrop`` time / frequency masking). It runs
        once, before the batch is repeated, so the Turbo views share it
        and differ only by the encoder's dropout.

    Example
    -------
    >>> enc = ModalityEncoder(ConvEncoder(input_size=8, channels=[16]))
    >>> x, lengths = torch.randn(3, 20, 8), torch.tensor([1.0, 0.5, 0.8])
    >>> enc(x, lengths).shape
    torch.Size([3, 16])
    """

    def __init__(self, encoder, frontend=None, pooling=None, augment=None):
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        if pooling is None:
            pooling = MaskedStatisticsPooling()
        self.pooling = pooling
        self.augment = augment

    def features(self, inputs, lengths):
        """Runs the deterministic front end (identity if there is none).

        Arguments
        ---------
        inputs : torch.Tensor
            Raw batch for this modality (waveforms, token ids...).
        lengths : torch.Tensor
            Relative lengths in [0, 1].

        Returns
        -------
        torch.Tensor
            The features fed to :meth:`embed`.

        Example
        -------
        >>> enc = ModalityEncoder(ConvEncoder(input_size=4, channels=[4]))
        >>> enc.features(torch.ones(1, 2, 4), torch.ones(1)).shape
        torch.Size([1, 2, 4])
        """
        features = inputs
        if self.frontend is not None:
            features = _call_with_lengths(self.frontend, inputs, lengths)
        if self.training and self.augment is not None:
            features = _call_with_lengths(self.augment, features, lengths)
        return features

    def embed(self, features, lengths):
        """Encodes and pools front-end features to one vector per row.

        Arguments
        ---------
        features : torch.Tensor
            Output of :meth:`features`, possibly repeated along the batch.
        lengths : torch.Tensor
            Relative lengths matching ``features``' batch.

        Returns
        -------
        torch.Tensor
            ``[B, D]`` pooled embeddings.

        Example
        -------
        >>> enc = ModalityEncoder(ConvEncoder(input_size=4, channels=[6]))
        >>> enc.embed(torch.randn(2, 5, 4), torch.ones(2)).shape
        torch.Size([2, 6])
        """
        hidden = _call_with_lengths(self.encoder, features, lengths)
        pooled = _call_with_lengths(self.pooling, hidden, lengths)
        return pooled.reshape(pooled.shape[0], -1)

    def forward(self, inputs, lengths, num_views=1, sequential=False):
        """Embeds a batch once, or twice with fresh dropout masks.

        The front end (and ``augment``, in training) runs once; for two
        views its output goes through :func:`twin_pass`: by default ONE
        forward over the doubled batch, so dropout draws independent masks
        per copy; with ``sequential``, two forwards over the same features.
        Either way the two views differ by dropout only. Keeping this inside
        ``forward`` keeps it safe under DDP.

        Arguments
        ---------
        inputs : torch.Tensor
            Raw batch for this modality.
        lengths : torch.Tensor
            Relative lengths in [0, 1].
        num_views : int
            2 for the Turbo twin pass, else 1.
        sequential : bool
            With two views: two B-row forwards instead of one 2B-row forward
            (less working memory per forward).

        Returns
        -------
        torch.Tensor
            ``[num_views * B, D]`` pooled embeddings, view-major (rows
            ``k * B ... (k + 1) * B - 1`` are view ``k``).

        Example
        -------
        >>> enc = ModalityEncoder(ConvEncoder(input_size=4, channels=[6]))
        >>> enc(torch.randn(3, 5, 4), torch.ones(3), num_views=2).shape
        torch.Size([6, 6])
        """
        if num_views not in (1, 2):
            raise ValueError(f"num_views must be 1 or 2, got {num_views}")
        features = self.features(inputs, lengths)
        if num_views == 1:
            return self.embed(features, lengths)
        if getattr(self.encoder, "shares_run_once", False):
            # What is frozen runs once, what trains runs on both views: the
            # encoder's part without dropout (wav2vec 2.0's frozen CNN,
            # Whisper's convolutions and frozen layers) runs once too.
            shared, frame_mask = self.encoder.run_once(features, lengths)
            views = twin_pass(
                self._embed_per_view,
                shared,
                frame_mask,
                lengths,
                sequential=sequential,
            )
        else:
            views = twin_pass(
                self.embed, features, lengths, sequential=sequential
            )
        return torch.cat(views)

    def _embed_per_view(self, shared, frame_mask, lengths):
        """Runs the encoder's trained part on the output of its
        ``run_once``, and pools.
        """
        hidden = self.encoder.run_per_view(shared, frame_mask)
        pooled = _call_with_lengths(self.pooling, hidden, lengths)
        return pooled.reshape(pooled.shape[0], -1)


def _call_with_lengths(module, x, lengths):
    """Calls ``module(x)``, passing lengths under the name it takes, if any."""
    name = lengths_arg_name(module.forward)
    output = module(x) if name is None else module(x, **{name: lengths})
    # HuggingFace-style lobes may return (hidden, extra): keep the hidden.
    return output[0] if isinstance(output, tuple) else output


class MaskedStatisticsPooling(torch.nn.Module):
    """Mean (and standard deviation) over the unpadded time steps.

    Deterministic and vectorised; SpeechBrain's ``StatisticsPooling`` adds
    random noise to the mean even in evaluation, which would make the two
    Turbo views differ for a reason other than dropout, and inference vary.

    Arguments
    ---------
    return_std : bool
        If True, the standard deviation is concatenated after the mean.
    eps : float
        Added to the variance before the square root.

    Example
    -------
    >>> pool = MaskedStatisticsPooling(return_std=True)
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> pool(x, torch.tensor([2 / 3]))
    tensor([[2.0000, 1.0000]])
    """

    def __init__(self, return_std=False, eps=1e-5):
        super().__init__()
        self.return_std = return_std
        self.eps = eps

    def forward(self, x, lengths=None):
        """Pools ``[B, T, D]`` into ``[B, D]`` (or ``[B, 2D]`` with std).

        Arguments
        ---------
        x : torch.Tensor
            Hidden states, channels last.
        lengths : torch.Tensor, optional
            Relative lengths in [0, 1]; None means no padding.

        Returns
        -------
        torch.Tensor
            The pooled statistics.
        """
        if lengths is None:
            mask = torch.ones(x.shape[:2], device=x.device)
        else:
            frames = torch.round(lengths * x.shape[1]).clamp(min=1)
            mask = length_to_mask(frames, max_len=x.shape[1]).to(x.device)
        mask = mask.unsqueeze(-1).to(x.dtype)
        count = mask.sum(dim=1)
        mean = (x * mask).sum(dim=1) / count
        if not self.return_std:
            return mean
        variance = ((x - mean.unsqueeze(1)) ** 2 * mask).sum(dim=1) / count
        return torch.cat([mean, (variance + self.eps).sqrt()], dim=-1)


class WeightedLayerSum(torch.nn.Module):
    """A learned weighted sum of an encoder's layers (SUPERB's recipe for
    downstream heads): each layer's output is layer-normalised (no
    parameters), and the weights are a softmax over one learned score per
    layer, all equal at the start.

    Its scores are new parameters (``trained_at_head_lr``): inside a
    pretrained ``*_encoder`` module, ``TurboBrain`` trains them at the
    heads' learning rate, not the encoder's.

    Arguments
    ---------
    num_layers : int
        Number of stacked layers (including the layers' input).

    Example
    -------
    >>> layers = WeightedLayerSum(3)
    >>> layers(torch.randn(2, 5, 3, 8)).shape
    torch.Size([2, 5, 8])
    """

    trained_at_head_lr = True

    def __init__(self, num_layers):
        super().__init__()
        self.scores = torch.nn.Parameter(torch.zeros(num_layers))

    def forward(self, hidden):
        """Sums ``[B, T, layers, D]`` over its layers into ``[B, T, D]``.

        Arguments
        ---------
        hidden : torch.Tensor
            Every layer's hidden states, stacked on dim 2.

        Returns
        -------
        torch.Tensor
            The weighted sum.
        """
        if hidden.shape[2] != self.scores.numel():
            raise ValueError(
                f"WeightedLayerSum has {self.scores.numel()} layer weights "
                f"but got {hidden.shape[2]} layers: set its num_layers to the "
                "encoder's kept layers + 1"
            )
        hidden = F.layer_norm(hidden, hidden.shape[-1:])
        weights = self.scores.softmax(dim=0).to(hidden.dtype)
        return (hidden * weights[:, None]).sum(dim=2)


class RandomCrop(torch.nn.Module):
    """Cuts each training waveform to at most ``max_seconds``, at a random
    offset within its own length, and the batch to that length.

    A batch is padded to its longest utterance, so a few long utterances
    make every row costly; cropped, the batch costs at most
    ``max_seconds`` per row. Meant as a recipe's ``wav_augment`` (training
    only: validation and test see whole utterances). Shorter utterances
    are kept whole. The offsets come from torch's global generator.

    Arguments
    ---------
    max_seconds : float
        Longest kept duration.
    sample_rate : int
        Samples per second of the waveforms.

    Example
    -------
    >>> crop = RandomCrop(max_seconds=1.0, sample_rate=4)
    >>> wavs = torch.arange(1.0, 17.0).reshape(2, 8)
    >>> cropped, lengths = crop(wavs, torch.tensor([1.0, 0.25]))
    >>> cropped.shape, lengths.tolist()
    (torch.Size([2, 4]), [1.0, 0.5])
    >>> cropped[1].tolist()  # the second row keeps its 2 samples
    [9.0, 10.0, 0.0, 0.0]
    """

    def __init__(self, max_seconds, sample_rate=16000):
        super().__init__()
        if max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.max_samples = int(round(max_seconds * sample_rate))

    def forward(self, wavs, lengths):
        """Crops ``wavs`` ``[B, T]`` with relative ``lengths`` ``[B]``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, T]`` padded waveforms.
        lengths : torch.Tensor
            ``[B]`` relative lengths.

        Returns
        -------
        tuple
            ``[B, min(T, max)]`` waveforms and their relative lengths.
        """
        total = wavs.shape[1]
        if total <= self.max_samples:
            return wavs, lengths
        real = (lengths * total).round().long().clamp(min=1, max=total)
        kept = real.clamp(max=self.max_samples)
        slack = (real - kept + 1).to(wavs.device)
        offsets = (torch.rand(len(real), device=wavs.device) * slack).long()
        steps = torch.arange(self.max_samples, device=wavs.device)
        index = (offsets[:, None] + steps).clamp(max=total - 1)
        cropped = wavs.gather(1, index)
        cropped = cropped * (steps < kept.to(wavs.device)[:, None])
        return cropped, kept.to(lengths.dtype) / self.max_samples


class ConvEncoder(torch.nn.Module):
    """A small from-scratch encoder: 1-D convolutions with dropout.

    Channels-last in and out (``[B, T, C]``), as SpeechBrain features are.
    Dropout sits on the input and after every block, so two passes with
    different masks give two views of the same input.

    Arguments
    ---------
    input_size : int
        Feature dimension of the input.
    channels : list of int
        Output channels of each convolution block.
    kernel_size : int
        Kernel size of every convolution (odd, "same" padding).
    dropout : float
        Dropout probability on the input and on each block's output.
    input_dropout : float, optional
        Dropout on the input; defaults to ``dropout``.

    Example
    -------
    >>> enc = ConvEncoder(input_size=40, channels=[32, 32], dropout=0.1)
    >>> enc(torch.randn(2, 50, 40)).shape
    torch.Size([2, 50, 32])
    """

    def __init__(
        self,
        input_size,
        channels,
        kernel_size=5,
        dropout=0.1,
        input_dropout=None,
    ):
        super().__init__()
        # Plain torch layers in one module: with SpeechBrain's Conv1d and
        # BatchNorm1d each block would be four YAML entries.
        if input_dropout is None:
            input_dropout = dropout
        self.input_dropout = torch.nn.Dropout(input_dropout)
        blocks = []
        for out_channels in channels:
            blocks.append(
                torch.nn.Sequential(
                    torch.nn.Conv1d(
                        input_size,
                        out_channels,
                        kernel_size,
                        padding=kernel_size // 2,
                    ),
                    torch.nn.BatchNorm1d(out_channels),
                    torch.nn.GELU(),
                    torch.nn.Dropout(dropout),
                )
            )
            input_size = out_channels
        self.blocks = torch.nn.Sequential(*blocks)

    def forward(self, x, lengths=None):
        """Encodes ``[B, T, C_in]`` into ``[B, T, C_out]``.

        Arguments
        ---------
        x : torch.Tensor
            Channels-last input features.
        lengths : torch.Tensor, optional
            Unused (padding is masked by the pooling); accepted so that all
            encoders share the ``(x, lengths)`` signature.

        Returns
        -------
        torch.Tensor
            Channels-last hidden states.
        """
        x = self.input_dropout(x).transpose(1, 2)
        return self.blocks(x).transpose(1, 2)


class ProjectionHead(torch.nn.Module):
    """MLP mapping a pooled embedding into the contrastive space.

    Arguments
    ---------
    input_size : int
        Dimension of the pooled embedding.
    hidden_size : int
        Hidden layer size.
    output_size : int
        Dimension of the contrastive space.

    Example
    -------
    >>> head = ProjectionHead(16, 32, 8)
    >>> head(torch.randn(4, 16)).shape
    torch.Size([4, 8])
    """

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(input_size, hidden_size),
            torch.nn.GELU(),
            torch.nn.Linear(hidden_size, output_size),
        )

    def forward(self, x):
        """Projects ``[B, input_size]`` to ``[B, output_size]``.

        Arguments
        ---------
        x : torch.Tensor
            Pooled embeddings.

        Returns
        -------
        torch.Tensor
            Projected embeddings (not normalised; the loss does that).
        """
        return self.mlp(x)


class ModalityFusion(torch.nn.Module):
    """Fuses the modalities' embeddings: one MLP over their concatenation
    (with interactions), or the sum of one MLP per modality (late fusion).

    Arguments
    ---------
    input_sizes : dict
        Embedding size of every modality this fusion may see.
    modalities : list of str
        The modalities used, in concatenation order (a subset of
        ``input_sizes``): an audio-only model is ``modalities=["audio"]``.
    hidden_size : int
        Output size of the fusion MLP.
    dropout : float
        Dropout after the hidden layer.
    modality_dropout : float
        In training, the probability that a row loses one of its modalities
        (chosen at random), replaced by that modality's learned "absent"
        embedding. A modality missing at inference (e.g. no transcript) is
        replaced the same way, so a model trained with modality dropout
        still classifies from the modalities it has. Without modality
        dropout the "absent" embeddings are zero vectors, never trained.
    standardise : bool
        Standardise each modality's embedding over the batch
        (``BatchNorm1d``) before fusing it. Pretrained encoders' pooled
        outputs have large offsets and small spreads; standardising them
        here, on the classifier's path only, leaves the projection heads
        (and the contrastive loss) the embeddings as the encoder gives them:
        batch statistics shared by a row's two views would make the
        contrastive task trivial.
    interactions : bool
        True: one MLP over the concatenated embeddings, so one modality
        can change what another's features mean. False: each modality has
        its own MLP and their outputs are summed, so that a linear
        classifier's logits are a sum of per-modality terms (late
        fusion): a modality that carries nothing about the label (e.g.
        the same sentences read in every emotion) can only shift the
        class prior, not combine with the other's features into
        training-set lookups.

    Example
    -------
    >>> fusion = ModalityFusion({"audio": 16, "text": 8}, ["audio", "text"], 12)
    >>> fusion({"audio": torch.randn(2, 16), "text": torch.randn(2, 8)}).shape
    torch.Size([2, 12])
    >>> fusion({"audio": torch.randn(2, 16)}).shape  # no text
    torch.Size([2, 12])
    >>> late = ModalityFusion(
    ...     {"audio": 16, "text": 8}, ["audio", "text"], 12, interactions=False
    ... )
    >>> late({"audio": torch.randn(2, 16), "text": torch.randn(2, 8)}).shape
    torch.Size([2, 12])
    """

    def __init__(
        self,
        input_sizes,
        modalities,
        hidden_size,
        dropout=0.1,
        modality_dropout=0.0,
        interactions=True,
        standardise=False,
    ):
        super().__init__()
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(
                f"modality_dropout must be in [0, 1), got {modality_dropout}"
            )
        unknown = [m for m in modalities if m not in input_sizes]
        if unknown:
            raise ValueError(
                f"ModalityFusion has no input size for modalities {unknown}: "
                f"add them to its input_sizes (now {dict(input_sizes)})"
            )
        self.modalities = list(modalities)
        self.input_sizes = {m: input_sizes[m] for m in self.modalities}
        self.modality_dropout = modality_dropout
        # Stands in for a modality that is missing (or dropped in training).
        # Learned only with modality dropout (else it would be a parameter
        # without gradient, which DDP refuses).
        self.absent = torch.nn.ParameterDict(
            {
                m: torch.nn.Parameter(
                    torch.zeros(size), requires_grad=modality_dropout > 0
                )
                for m, size in self.input_sizes.items()
            }
        )

        def mlp(input_size):
            """One fusion layer: linear, GELU, dropout."""
            return torch.nn.Sequential(
                torch.nn.Linear(input_size, hidden_size),
                torch.nn.GELU(),
                torch.nn.Dropout(dropout),
            )

        self.norms = None
        if standardise:
            self.norms = torch.nn.ModuleDict(
                {
                    m: torch.nn.BatchNorm1d(size)
                    for m, size in self.input_sizes.items()
                }
            )
        self.interactions = interactions
        if interactions:
            self.mlp = mlp(sum(self.input_sizes.values()))
        else:
            self.mlp = torch.nn.ModuleDict(
                {m: mlp(size) for m, size in self.input_sizes.items()}
            )

    def forward(self, embeddings):
        """Fuses ``{modality: [B, D_m]}`` into ``[B, hidden_size]``.

        Arguments
        ---------
        embeddings : dict
            Modality name -> pooled embedding. A used modality that is
            absent (or None) gets its "absent" embedding; at least
            one must be present.

        Returns
        -------
        torch.Tensor
            The fused representation.
        """
        present = {m: e for m, e in embeddings.items() if e is not None}
        for m, embedding in present.items():
            size = self.input_sizes.get(m)
            if size is not None and embedding.shape[-1] != size:
                got = {k: v.shape[-1] for k, v in present.items()}
                raise ValueError(
                    f"ModalityFusion expects embeddings of sizes "
                    f"{self.input_sizes} but got {got}: check the fusion "
                    "input_sizes and the encoders' output sizes in the hparams"
                )
        used = [m for m in self.modalities if m in present]
        if not used:
            raise ValueError(
                f"ModalityFusion got none of its modalities {self.modalities}"
            )
        rows = present[used[0]].shape[0]
        if self.norms is not None:
            present = {
                m: self.norms[m](e) if m in self.norms else e
                for m, e in present.items()
            }
        parts = []
        for m in self.modalities:
            absent = self.absent[m].expand(rows, -1)
            parts.append(present[m] if m in present else absent)
        if self.training and self.modality_dropout > 0 and len(used) > 1:
            parts = self._drop_modalities(parts)
        if self.interactions:
            return self.mlp(torch.cat(parts, -1))
        return sum(self.mlp[m](part) for m, part in zip(self.modalities, parts))

    def _drop_modalities(self, parts):
        """Replaces one random modality of some rows by its absent vector."""
        rows = parts[0].shape[0]
        device = parts[0].device
        dropped = torch.rand(rows, device=device) < self.modality_dropout
        which = torch.randint(len(parts), (rows,), device=device)
        return [
            torch.where(
                (dropped & (which == k)).unsqueeze(-1),
                self.absent[m].expand_as(part).to(part.dtype),
                part,
            )
            for k, (m, part) in enumerate(zip(self.modalities, parts))
        ]


# The name of ModalityFusion in the hyperparams.yaml of model folders
# exported before it was renamed: they still load.
ConcatFusion = ModalityFusion
