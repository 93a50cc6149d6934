"""TurboBrain: a SpeechBrain Brain that trains a multi-modal classifier with
the Turbo twin pass (two dropout views per batch) and the Turbo objective.

The hparams it reads:

- ``modalities``: list of modality names, e.g. ``[audio, text]``. The
  batch's input of modality ``<m>`` (a ``PaddedData`` under its key in
  :data:`speechbrain_turbo.dataio.INPUT_KEYS`) feeds module ``<m>_encoder``
  (a :class:`speechbrain_turbo.models.ModalityEncoder`); ``<m>_projection``
  maps its embedding into the contrastive space.
- modules ``fusion`` (dict of embeddings -> vector), ``classifier`` (logits)
  and ``turbo_loss`` (:class:`speechbrain_turbo.losses.TurboLoss`).
- ``turbo_weight`` (float) and ``twin_pass`` (True: two dropout views per
  training batch; False: one). ``turbo_weight: 0`` with ``twin_pass: False``
  is the plain cross-entropy baseline on the same code path. Optional
  ``sequential_views`` (default False): the two views from two B-row
  forwards instead of one 2B-row forward (less working memory).
- optional, other uses of the two views: ``consistency_weight`` (default 0)
  adds the symmetric KL between their class posteriors (R-Drop);
  ``turbo_warmup_epochs`` (default 0) ramps ``turbo_weight`` up linearly
  over the first epochs.
- optional: ``wav_augment`` (e.g. SpeechBrain's ``Augmenter`` with speed
  perturbation and noise), applied to the training waveforms once, before
  the twin pass doubles the batch, so the two views differ only by
  dropout; ``mask_repeated_transcripts`` (default True): rows with the same
  normalised transcript are not each other's negatives; ``lr_annealing``
  (an epoch scheduler, e.g. ``LinearScheduler``); ``label_encoder``;
  ``train_logger``; ``output_folder`` for the test reports.
- optional, for pretrained encoders: ``encoder_opt_class`` gives the
  parameters of every ``*_encoder`` module their own optimizer (and
  ``encoder_lr_annealing`` its schedule); ``opt_class`` then trains the rest.

Authors
 * speechbrain-turbo contributors
"""

import time

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.brain_workarounds import SpeechBrainWorkarounds
from speechbrain_turbo.dataio import INPUT_KEYS, transcript_group_ids
from speechbrain_turbo.losses import share_of_global_batch, symmetric_kl
from speechbrain_turbo.metrics import alignment, contrastive_diagnostics
from speechbrain_turbo.optimizers import EncoderOptimizers, encoder_parameters
from speechbrain_turbo.reports import StageReports

logger = get_logger(__name__)


class TurboBrain(
    SpeechBrainWorkarounds, EncoderOptimizers, StageReports, sb.Brain
):
    """Brain for Turbo: twin pass in training, one pass in evaluation.

    The loss is ``(CE(view 1) + CE(view 2)) / 2 + turbo_weight * Turbo``.
    The best checkpoint is chosen on validation UA only.

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.Brain``.

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from speechbrain.nnet.linear import Linear
    >>> from speechbrain_turbo.losses import TurboLoss
    >>> from speechbrain_turbo.models import (
    ...     ModalityFusion, ConvEncoder, ModalityEncoder, ProjectionHead
    ... )
    >>> modules = {
    ...     "audio_encoder": ModalityEncoder(
    ...         ConvEncoder(input_size=4, channels=[8], dropout=0.2)
    ...     ),
    ...     "audio_projection": ProjectionHead(8, 8, 4),
    ...     "fusion": ModalityFusion({"audio": 8}, ["audio"], hidden_size=8),
    ...     "classifier": Linear(input_size=8, n_neurons=2),
    ...     "turbo_loss": TurboLoss(temperature=0.1),
    ... }
    >>> brain = TurboBrain(
    ...     modules=modules,
    ...     opt_class=lambda params: torch.optim.Adam(params, lr=1e-3),
    ...     hparams={"modalities": ["audio"], "turbo_weight": 0.1,
    ...              "twin_pass": True},
    ...     run_opts={"device": "cpu"},
    ... )
    >>> batch = PaddedBatch([
    ...     {"id": f"u{i}", "audio": torch.randn(6, 4),
    ...      "transcript": "hi", "label": torch.tensor([i % 2])}
    ...     for i in range(4)
    ... ])
    >>> brain.on_fit_start()
    >>> brain.on_stage_start(sb.Stage.TRAIN)
    >>> loss = brain.fit_batch(batch)  # one twin-pass training step
    >>> bool(torch.isfinite(loss))
    True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_config()
        self._warned_identical = set()
        self.consecutive_skipped = 0
        # Modalities withheld in evaluation (see evaluate_without).
        self.missing_modalities = ()

    def _check_config(self):
        """Fails early, naming the hparams key, on an inconsistent setup."""
        twin_pass = self.hparams.twin_pass
        if not isinstance(twin_pass, bool):
            raise ValueError(
                f"hparams key twin_pass must be True or False, got "
                f"{twin_pass!r} (two forwards instead of one doubled one: "
                "twin_pass: True with sequential_views: True)"
            )
        if not self.modalities:
            raise ValueError("hparams key modalities lists no modality")
        if self.consistency_weight > 0 and not twin_pass:
            raise ValueError(
                f"consistency_weight={self.consistency_weight} compares two "
                "views: set twin_pass to True"
            )
        needed = [f"{m}_encoder" for m in self.modalities]
        needed += ["fusion", "classifier"]
        if self.turbo_weight > 0:
            if not twin_pass:
                raise ValueError(
                    f"turbo_weight={self.turbo_weight} needs two views: set "
                    "twin_pass to True (or turbo_weight to 0 "
                    "for the cross-entropy baseline)"
                )
            needed += [f"{m}_projection" for m in self.modalities]
            needed.append("turbo_loss")
        missing = [name for name in needed if name not in self.modules]
        if missing:
            raise ValueError(
                f"hparams modules lacks {missing}, needed by modalities "
                f"{self.modalities} with turbo_weight={self.turbo_weight}"
            )

    @property
    def modalities(self):
        """The modality names, in fusion order."""
        return list(self.hparams.modalities)

    @property
    def turbo_weight(self):
        """Weight of the contrastive term (0 disables it)."""
        return float(self.hparams.turbo_weight)

    @property
    def consistency_weight(self):
        """Weight of the symmetric KL between the two views' class
        posteriors (R-Drop; hparams ``consistency_weight``, default 0).
        """
        return float(getattr(self.hparams, "consistency_weight", 0.0))

    def _scheduled_turbo_weight(self):
        """``turbo_weight``, ramped up linearly over the first
        ``turbo_warmup_epochs`` epochs (hparams, default 0: no ramp).
        """
        warmup = int(getattr(self.hparams, "turbo_warmup_epochs", 0))
        counter = getattr(self.hparams, "epoch_counter", None)
        if warmup <= 0 or counter is None:
            return self.turbo_weight
        return self.turbo_weight * min(1.0, counter.current / warmup)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """After an optimizer step, clamps a learned temperature (CLIP).

        Arguments
        ---------
        batch : PaddedBatch
            The batch.
        outputs : dict
            Output of :meth:`compute_forward`.
        loss : torch.Tensor
            The batch's loss.
        should_step : bool
            Whether the optimizers stepped.
        """
        if should_step and "turbo_loss" in self.modules:
            turbo_loss = self.modules.turbo_loss
            getattr(
                turbo_loss, "module", turbo_loss
            ).clamp_inverse_temperature_()

    def compute_forward(self, batch, stage):
        """Encodes every modality and classifies the fused embeddings.

        The twin pass (training only): the batch goes through the network
        as ONE forward over ``[batch; batch]`` (2B rows), so dropout draws
        independent masks for the two copies; the outputs split into two
        views of every modality's embedding and two class predictions.
        ``sequential_views: True`` runs two B-row forwards instead. Either
        way the augmentations run once, before the views are drawn
        (:meth:`ModalityEncoder.forward`, which calls :func:`twin_pass`).

        Arguments
        ---------
        batch : PaddedBatch
            Holds each modality's input under its key in
            :data:`speechbrain_turbo.dataio.INPUT_KEYS` (``audio``,
            ``token_ids``), and ``label``.
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        dict
            ``logits``: ``[V * B, C]``, view-major, with V = 2 for the twin
            pass, else 1; ``views``: modality -> (view 1, view 2) projected
            embeddings, or None when the Turbo term is off.
        """
        batch = batch.to(self.device)
        inputs = self._inputs(batch, stage)
        twin = stage == sb.Stage.TRAIN and self.hparams.twin_pass
        # Each modality's pooled embedding: [2B, D] (the two dropout views,
        # view-major) for the twin pass, else [B, D].
        embeddings = {
            m: self.modules[f"{m}_encoder"](
                *data,
                num_views=2 if twin else 1,
                sequential=getattr(self.hparams, "sequential_views", False),
            )
            for m, data in inputs.items()
        }

        fused = self.modules.fusion(embeddings)
        logits = self.modules.classifier(fused)

        # The contrastive space: two views to train on, one to analyse
        # (alignment / uniformity) in evaluation.
        views = None
        if self.turbo_weight > 0 and (twin or stage != sb.Stage.TRAIN):
            views = {
                m: self.modules[f"{m}_projection"](embeddings[m]).chunk(
                    2 if twin else 1
                )
                for m in embeddings
            }
        return {"logits": logits, "views": views}

    def _inputs(self, batch, stage):
        """Each present modality's ``(data, lengths)``; in training, the
        audio goes through ``wav_augment`` first (once for both views).
        """
        inputs = {
            m: tuple(batch[INPUT_KEYS[m]])
            for m in self.modalities
            if m not in self.missing_modalities
        }
        augment = getattr(self.hparams, "wav_augment", None)
        if (
            stage == sb.Stage.TRAIN
            and augment is not None
            and "audio" in inputs
        ):
            wavs, lengths = inputs["audio"]
            augmented, lengths = augment(wavs, lengths)
            if augmented.shape[0] != wavs.shape[0]:
                raise ValueError(
                    f"wav_augment turned a batch of {wavs.shape[0]} rows into "
                    f"{augmented.shape[0]}: set concat_original (and "
                    "repeat_augment > 1) off, the labels and transcripts are "
                    "not repeated with the audio"
                )
            inputs["audio"] = (augmented, lengths)
        return inputs

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy over all views plus the weighted Turbo term.

        Arguments
        ---------
        predictions : dict
            Output of :meth:`compute_forward`.
        batch : PaddedBatch
            Holds ``label`` (class ids) and ``transcript`` (strings).
        stage : sb.Stage
            TRAIN, VALID or TEST.

        Returns
        -------
        torch.Tensor
            The loss to minimise (CE alone outside training).
        """
        labels = batch.label.data.reshape(-1)
        logits = predictions["logits"]
        num_views = logits.shape[0] // labels.shape[0]
        # The mean over the V * B rows equals the mean of the V views' CEs.
        ce = F.cross_entropy(logits.float(), labels.repeat(num_views))
        if stage != sb.Stage.TRAIN:
            self._record_evaluation(logits, predictions["views"], labels, batch)
            return ce

        terms = {"CE": ce}
        loss = ce
        if num_views == 2 and self.consistency_weight > 0:
            terms["consistency"] = symmetric_kl(*logits.float().chunk(2))
            loss = loss + self.consistency_weight * terms["consistency"]
        # Under DDP, batches of unequal size count by their rows (TurboLoss
        # weights its own term the same way).
        loss = loss * share_of_global_batch(labels.shape[0], labels.device)
        if predictions["views"] is not None:
            loss = loss + self._turbo_term(
                predictions["views"], labels, batch, ce, terms
            )
        terms["total"] = loss
        self._add_train_terms(terms)
        return loss

    def _turbo_term(self, views, labels, batch, ce, terms):
        """The weighted Turbo term of a training batch; its parts and the
        contrastive diagnostics go into ``terms`` (for the logs).
        """
        self._warn_if_views_identical(views)
        groups = self._negative_groups(batch)
        turbo = self.modules.turbo_loss(views, labels=labels, groups=groups)
        weighted = self._scheduled_turbo_weight() * turbo["loss"]
        if self._sample_gradient_ratio():
            terms["grad_ratio"] = self._gradient_ratio(ce, weighted)
        terms.update(
            {k: v for k, v in turbo.items() if k != "loss"},
            **contrastive_diagnostics(views, groups),
        )
        # In-modal alignment of the two dropout views (Wang & Isola).
        for m, (first, second) in views.items():
            terms[f"align_{m}"] = alignment(first.detach(), second.detach())
        return weighted

    def _record_evaluation(self, logits, views, labels, batch):
        """Keeps an evaluation batch's predictions, targets, IDs and
        projected embeddings, and adds its contrastive terms to the stage's
        sums.
        """
        self.predicted.append(logits.argmax(dim=-1).cpu())
        self.targets.append(labels.cpu())
        self.ids.extend(batch.id)
        for m, (view,) in (views or {}).items():
            self.projected.setdefault(m, []).append(view.detach().cpu())
        if views is not None:
            self._add_eval_terms(views, labels, batch)

    def _add_eval_terms(self, views, labels, batch):
        """Adds an evaluation batch's contrastive diagnostics (and, in one
        process, Turbo's terms) to the stage's sums. Dropout is off, so
        a modality's two views coincide: its in-modal term then says only
        how far apart the rows are, its cross-modal term is the real one.
        """
        groups = self._negative_groups(batch)
        terms = contrastive_diagnostics(views, groups)
        # TurboLoss gathers across processes, and evaluation shards may
        # hold different numbers of batches: one process only.
        if self._world_size() == 1:
            with torch.no_grad():
                turbo = self.modules.turbo_loss(
                    {m: (view, view) for m, (view,) in views.items()},
                    labels=labels,
                    groups=groups,
                )
            terms.update(
                {
                    k: float(v)
                    for k, v in turbo.items()
                    if k.startswith(("in_modal", "cross_modal"))
                }
            )
        for name, value in terms.items():
            self.eval_sums[name] = self.eval_sums.get(name, 0.0) + value
        self.eval_batches += 1

    def _sample_gradient_ratio(self):
        """Whether this training step measures the gradient ratio: every
        ``grad_ratio_interval`` steps (hparams, default 20; 0: never),
        from each epoch's first, in one process only.
        """
        interval = int(getattr(self.hparams, "grad_ratio_interval", 20))
        return (
            interval > 0
            and (self.step - 1) % interval == 0
            and self._world_size() == 1
        )

    def _gradient_ratio(self, ce, weighted_turbo):
        """Norm of the weighted Turbo term's gradient over the cross-entropy's,
        on the trainable parameters of the ``*_encoder`` modules (two extra
        backward passes; the training step's own gradients are untouched).
        """
        params = encoder_parameters(self.modules)
        if not params:
            return float("nan")
        norms = []
        for term in (weighted_turbo, ce):
            grads = torch.autograd.grad(
                term, params, retain_graph=True, allow_unused=True
            )
            norms.append(
                sum(
                    float(g.float().pow(2).sum())
                    for g in grads
                    if g is not None
                )
                ** 0.5
            )
        return norms[0] / max(norms[1], 1e-12)

    def _negative_groups(self, batch):
        """Transcript ids when repeated transcripts are masked, else None."""
        if not getattr(self.hparams, "mask_repeated_transcripts", True):
            return None
        return transcript_group_ids(batch.transcript).to(self.device)

    def _warn_if_views_identical(self, views):
        """Warns once per modality whose two views are equal (no dropout)."""
        for name, (first, second) in views.items():
            if name not in self._warned_identical and torch.equal(
                first, second
            ):
                self._warned_identical.add(name)
                logger.warning(
                    "The two Turbo views of modality %r are identical: its "
                    "encoder applies no dropout after the front end, so the "
                    "in-modal term cannot learn. Give %s_encoder dropout on "
                    "its hidden layers.",
                    name,
                    name,
                )

    def on_stage_start(self, stage, epoch=None):
        """Resets the per-epoch accumulators.

        Arguments
        ---------
        stage : sb.Stage
            TRAIN, VALID or TEST.
        epoch : int, optional
            Current epoch.
        """
        self.train_sums, self.train_steps = {}, 0
        self.skipped_steps = 0
        # Whether a non-finite loss was met since the last optimizer step.
        self.nonfinite_in_accumulation = False
        self.audio_samples, self.padded_samples = 0, 0.0
        self.predicted, self.targets, self.projected = [], [], {}
        self.ids = []
        self.eval_sums, self.eval_batches = {}, 0
        self._stage_start = time.perf_counter()
        if stage == sb.Stage.TRAIN:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the epoch's statistics, checkpoints on validation UA.

        Arguments
        ---------
        stage : sb.Stage
            TRAIN, VALID or TEST.
        stage_loss : float
            Average loss of the stage.
        epoch : int, optional
            Current epoch.
        """
        if stage == sb.Stage.TRAIN:
            self.train_stats = self._train_epoch_stats()
            return

        stats = self._evaluation_stats(stage_loss)
        if stage == sb.Stage.VALID:
            meta = {"epoch": epoch, **self._anneal_learning_rates(epoch)}
            self.hparams.train_logger.log_stats(
                stats_meta=meta,
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self._record_history(epoch, stats)
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={k: v for k, v in stats.items() if k != "loss"},
                    max_keys=["UA"],
                )
        else:
            meta = {"Epoch loaded": self.hparams.epoch_counter.current}
            if self.missing_modalities:
                meta["without"] = "+".join(self.missing_modalities)
            self.hparams.train_logger.log_stats(
                stats_meta=meta, test_stats=stats
            )
            if sb.utils.distributed.if_main_process():
                self._write_test_report(stats)

    def _anneal_learning_rates(self, epoch):
        """Steps the epoch schedulers; returns the rates the epoch used."""
        rates = {}
        schedules = (
            (
                "lr",
                getattr(self, "optimizer", None),
                getattr(self.hparams, "lr_annealing", None),
            ),
            (
                "encoder_lr",
                getattr(self, "encoder_optimizer", None),
                getattr(self.hparams, "encoder_lr_annealing", None),
            ),
        )
        for key, optimizer, scheduler in schedules:
            if optimizer is None:
                continue
            rates[key] = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                _, new_lr = scheduler(epoch)
                sb.nnet.schedulers.update_learning_rate(optimizer, new_lr)
        return rates

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Loads the best checkpoint and remembers what it scored.

        Arguments
        ---------
        max_key : str, optional
            Checkpoint meta key to maximise (``UA`` in the recipes).
        min_key : str, optional
            Checkpoint meta key to minimise.
        """
        # Brain.on_evaluate_start's recovery, keeping the checkpoint loaded
        # (a FallbackCheckpointer may pass over a broken best one).
        checkpoint = None
        if self.checkpointer is not None:
            checkpoint = self.checkpointer.recover_if_possible(
                max_key=max_key, min_key=min_key
            )
        self.selected_checkpoint = {} if checkpoint is None else checkpoint.meta
