"""TurboBrain: a SpeechBrain Brain that trains a multi-modal classifier with
the Turbo twin pass (two dropout views per batch) and the Turbo objective.

The hparams it reads:

- ``modalities``: list of modality names, e.g. ``[audio, text]``. Batch item
  ``<m>`` (a ``PaddedData``) feeds module ``<m>_encoder`` (a
  :class:`speechbrain_turbo.models.ModalityEncoder`); ``<m>_projection`` maps
  its embedding into the contrastive space.
- modules ``fusion`` (dict of embeddings -> vector), ``classifier`` (logits)
  and ``turbo_loss`` (:class:`speechbrain_turbo.losses.TurboLoss`).
- ``turbo_weight`` (float) and ``twin_pass`` (True, False or "sequential").
  ``turbo_weight: 0`` with ``twin_pass: False`` is the plain cross-entropy
  baseline on the same code path.
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

import csv
import gc
import itertools
import json
import os
import time

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.dataio import transcript_group_ids
from speechbrain_turbo.losses import share_of_global_batch, symmetric_kl
from speechbrain_turbo.metrics import (
    alignment,
    classification_metrics,
    plot_training_curves,
    uniformity,
    write_confusion_matrix,
)

logger = get_logger(__name__)

TWIN_PASS_MODES = (True, False, "sequential")


class TurboBrain(sb.Brain):
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
    ...     ConcatFusion, ConvEncoder, ModalityEncoder, ProjectionHead
    ... )
    >>> modules = {
    ...     "audio_encoder": ModalityEncoder(
    ...         ConvEncoder(input_size=4, channels=[8], dropout=0.2)
    ...     ),
    ...     "audio_projection": ProjectionHead(8, 8, 4),
    ...     "fusion": ConcatFusion({"audio": 8}, ["audio"], hidden_size=8),
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
        if twin_pass not in TWIN_PASS_MODES:
            raise ValueError(
                f"hparams key twin_pass must be True, False or sequential, "
                f"got {twin_pass!r}"
            )
        if not self.modalities:
            raise ValueError("hparams key modalities lists no modality")
        if self.consistency_weight > 0 and not twin_pass:
            raise ValueError(
                f"consistency_weight={self.consistency_weight} compares two "
                "views: set twin_pass to True or sequential"
            )
        needed = [f"{m}_encoder" for m in self.modalities]
        needed += ["fusion", "classifier"]
        if self.turbo_weight > 0:
            if not twin_pass:
                raise ValueError(
                    f"turbo_weight={self.turbo_weight} needs two views: set "
                    "twin_pass to True or sequential (or turbo_weight to 0 "
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

    def _wrap_distributed(self):
        """SpeechBrain's DDP wrapping, with BatchNorm left alone on CPU.

        SpeechBrain turns every BatchNorm into SyncBatchNorm under DDP, but
        SyncBatchNorm only runs on GPUs: a CPU run with the gloo backend
        would stop at its first batch. DDP's buffer broadcast still keeps
        the running statistics of all processes equal to the first one's.
        """
        on_cpu = torch.device(self.device).type == "cpu"
        if not (self.distributed_launch and on_cpu):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module,
                    device_ids=None,
                    find_unused_parameters=self.find_unused_parameters,
                )

    def leave_process_group(self):
        """Ends a DDP run: unwraps the modules, then all processes leave
        the process group together. Nothing to do outside DDP.

        A gloo process that exits with the group still alive aborts
        ("terminate called without an active exception"), and DDP's
        wrappers keep the group alive past ``destroy_process_group`` until
        the interpreter tears them down: they are dropped first.
        """
        if not sb.utils.distributed.is_distributed_initialized():
            return
        for name, module in self.modules.items():
            if isinstance(module, torch.nn.parallel.DistributedDataParallel):
                self.modules[name] = module.module
        gc.collect()
        sb.utils.distributed.ddp_barrier()
        torch.distributed.destroy_process_group()

    def init_optimizers(self):
        """One optimizer, or two with ``encoder_opt_class``.

        Pretrained encoders want a far smaller learning rate than the freshly
        initialised heads: with ``encoder_opt_class`` in the hparams, the
        trainable parameters of every ``*_encoder`` module go to it and
        ``opt_class`` trains the rest. Both are checkpointed, and both
        leave out of weight decay what :meth:`_decay_groups` says.
        """
        encoder_opt_class = getattr(self.hparams, "encoder_opt_class", None)
        encoder_params = []
        if encoder_opt_class is not None:
            encoder_params = [
                param
                for name, module in self.modules.items()
                if name.endswith("_encoder")
                for param in module.parameters()
                if param.requires_grad
            ]
        in_encoders = {id(param) for param in encoder_params}
        head_params = [
            param
            for param in self.modules.parameters()
            if param.requires_grad and id(param) not in in_encoders
        ]
        self.optimizer = self.opt_class(self._decay_groups(head_params))
        self.optimizers_dict = {"heads": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
        if encoder_opt_class is None:
            return
        if not encoder_params:
            logger.info("The encoders are frozen: encoder_opt_class unused")
            return
        self.encoder_optimizer = encoder_opt_class(
            self._decay_groups(encoder_params)
        )
        self.optimizers_dict["encoders"] = self.encoder_optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable(
                "encoder_optimizer", self.encoder_optimizer
            )

    def _decay_groups(self, params):
        """Parameter groups: scalars (the learned temperature) never get
        weight decay, vectors (biases, norms) not when
        ``remove_vector_weight_decay`` is set; the rest do. SpeechBrain's
        own grouping only covers one optimizer and decays scalars.
        """
        no_decay_below = 2 if self.remove_vector_weight_decay else 1
        decay = [p for p in params if p.dim() >= no_decay_below]
        no_decay = [p for p in params if p.dim() < no_decay_below]
        groups = [{"params": decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

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

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's loader, seeding its workers from its own generator.

        A DataLoader draws its workers' base seed from the global torch
        generator each time it is iterated, unless it has a generator of
        its own. With one, iterating a loader (as a resumed run does once
        more than an uninterrupted one) leaves the global generator, and so
        the dropout masks of the twin pass, where they were.

        Arguments
        ---------
        dataset : Dataset
            As for ``speechbrain.Brain.make_dataloader``.
        stage : sb.Stage
            TRAIN, VALID or TEST.
        ckpt_prefix : str
            Prefix of the loader's recoverable name.
        **loader_kwargs : dict
            DataLoader options.

        Returns
        -------
        DataLoader
            The loader.
        """
        if "generator" not in loader_kwargs:
            generator = torch.Generator()
            generator.manual_seed(torch.initial_seed() + int(stage.value))
            loader_kwargs["generator"] = generator
        if stage != sb.Stage.TRAIN and self._world_size() > 1:
            loader_kwargs = self._shard_evaluation(dataset, loader_kwargs)
        return super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )

    def _train_loader_specifics(self, dataset, loader_kwargs):
        """SpeechBrain's training-loader set-up, and a batch sampler's epoch.

        SpeechBrain calls ``set_epoch`` at each epoch only on a sampler it
        made or wrapped for DDP. A ``batch_sampler`` given in a single
        process (e.g. ``DynamicBatchSampler``) would then draw epoch 0's
        batches again every epoch, and a resumed run could not rebuild the
        epoch it stopped in; it is made the epoch-aware sampler here.
        """
        loader_kwargs = super()._train_loader_specifics(dataset, loader_kwargs)
        batch_sampler = loader_kwargs.get("batch_sampler")
        if self.train_sampler is None and hasattr(batch_sampler, "set_epoch"):
            self.train_sampler = batch_sampler
        return loader_kwargs

    @staticmethod
    def _world_size():
        """Number of processes of the initialised group (1 without one)."""
        if torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        ):
            return torch.distributed.get_world_size()
        return 1

    def _shard_evaluation(self, dataset, loader_kwargs):
        """Validation and test shards, one per process, in order.

        SpeechBrain 1.1 shards only the training set under DDP (its code
        for the others is commented out in ``Brain.make_dataloader``), so
        every process would score the whole set. A ``DistributedSampler``
        without shuffling gives each process every N-th item (repeating a
        few to even the shards out; :meth:`_gather_predictions` counts each
        utterance once).
        """
        if isinstance(dataset, torch.utils.data.DataLoader):
            return loader_kwargs
        if "sampler" in loader_kwargs or "batch_sampler" in loader_kwargs:
            return loader_kwargs
        return {
            **loader_kwargs,
            "shuffle": False,
            "sampler": torch.utils.data.distributed.DistributedSampler(
                dataset, shuffle=False, drop_last=False
            ),
        }

    def compute_forward(self, batch, stage):
        """Encodes every modality and classifies the fused embeddings.

        The twin pass (training only): the batch goes through the network
        as ONE forward over ``[batch; batch]`` (2B rows), so dropout draws
        independent masks for the two copies; the outputs split into two
        views of every modality's embedding and two class predictions.
        ``twin_pass: sequential`` runs two B-row forwards instead.

        Arguments
        ---------
        batch : PaddedBatch
            Holds one ``PaddedData`` per modality name, and ``label``.
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
        twin = stage == sb.Stage.TRAIN and bool(self.hparams.twin_pass)
        if twin and self.hparams.twin_pass == "sequential":
            passes = [self._embed(inputs, 1), self._embed(inputs, 1)]
            embeddings = {
                m: torch.cat([p[m] for p in passes]) for m in self.modalities
            }
        else:
            embeddings = self._embed(inputs, 2 if twin else 1)

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
            m: tuple(batch[m])
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

    def _embed(self, inputs, num_views):
        """Pooled ``[num_views * B, D]`` embedding of each modality."""
        return {
            m: self.modules[f"{m}_encoder"](*data, num_views=num_views)
            for m, data in inputs.items()
        }

    def evaluate_without(self, missing, test_set, **kwargs):
        """Tests with some modalities withheld, e.g. no transcripts.

        The fusion puts its "absent" embedding in their place (see
        :class:`speechbrain_turbo.models.ConcatFusion`: learned with modality
        dropout, else a zero vector that training never saw, which the log
        says); the reports are
        written as ``test_metrics_without_<modalities>.json`` and
        ``test_confusion_without_<modalities>.csv`` / ``.png``.

        Arguments
        ---------
        missing : list of str
            The modalities to withhold.
        test_set : Dataset or DataLoader
            As for ``evaluate``.
        **kwargs : dict
            Passed to ``evaluate`` (``max_key``, ``test_loader_kwargs``).

        Returns
        -------
        float
            The test loss.
        """
        unknown = [m for m in missing if m not in self.modalities]
        if unknown or len(missing) >= len(self.modalities):
            raise ValueError(
                f"Cannot test without {list(missing)}: the model's "
                f"modalities are {self.modalities}, and one must remain"
            )
        fusion = getattr(self.modules.fusion, "module", self.modules.fusion)
        if not getattr(fusion, "modality_dropout", 0) > 0:
            logger.warning(
                "Testing without %s: the model was trained without modality "
                "dropout, so the 'absent' embedding in their place is an "
                "untrained zero placeholder; these numbers say how the model "
                "copes with it, not what audio alone can do (train with "
                "--modality_dropout for that).",
                list(missing),
            )
        self.missing_modalities = tuple(missing)
        try:
            return self.evaluate(test_set, **kwargs)
        finally:
            self.missing_modalities = ()

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
            self.predicted.append(logits.argmax(dim=-1).cpu())
            self.targets.append(labels.cpu())
            self.ids.extend(batch.id)
            for m, (view,) in (predictions["views"] or {}).items():
                self.projected.setdefault(m, []).append(view.detach().cpu())
            return ce

        loss = ce
        terms = {"CE": ce}
        if num_views == 2 and self.consistency_weight > 0:
            consistency = symmetric_kl(*logits.float().chunk(2))
            loss = loss + self.consistency_weight * consistency
            terms["consistency"] = consistency
        # Under DDP, batches of unequal size count by their rows (TurboLoss
        # weights its own term the same way).
        loss = loss * share_of_global_batch(labels.shape[0], labels.device)
        if predictions["views"] is not None:
            self._warn_if_views_identical(predictions["views"])
            turbo = self.modules.turbo_loss(
                predictions["views"],
                labels=labels,
                groups=self._negative_groups(batch),
            )
            loss = loss + self._scheduled_turbo_weight() * turbo["loss"]
            terms.update(
                in_modal=turbo["in_modal"],
                cross_modal=turbo["cross_modal"],
                inverse_temperature=turbo["inverse_temperature"],
            )
            # In-modal alignment of the two dropout views (Wang & Isola).
            for m, (first, second) in predictions["views"].items():
                terms[f"align_{m}"] = alignment(first.detach(), second.detach())
        terms["total"] = loss
        # A non-finite step is skipped by fit_batch and left out of the
        # epoch's averages.
        if torch.isfinite(loss):
            for name, value in terms.items():
                value = value.detach() if torch.is_tensor(value) else value
                self.train_sums[name] = self.train_sums.get(name, 0.0) + float(
                    value
                )
            self.train_steps += 1
        return loss

    def fit_batch(self, batch):
        """One training step; a step whose loss is NaN or Inf is skipped.

        As SpeechBrain's ``fit_batch`` (autocast, gradient accumulation,
        clipping), except that a non-finite loss is neither backpropagated
        nor stepped: the gradients accumulated since the last step are
        dropped, the step is counted (``skipped_steps`` in the epoch's
        train stats) and logged with its utterance ids, and after more than
        ``--nonfinite_patience`` such steps in a row training stops with an
        error. Under DDP every process skips when any one of them must.

        Arguments
        ---------
        batch : PaddedBatch
            The training batch.

        Returns
        -------
        torch.Tensor
            The detached loss (non-finite for a skipped step).
        """
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self._count_padding(batch)
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            if not self._finite_on_every_rank(loss):
                self._skip_step(batch, loss)
                return loss.detach().cpu()
            self.consecutive_skipped = 0
            self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if should_step:
            self.optimizers_step()
        self.on_fit_batch_end(batch, outputs, loss, should_step)
        return loss.detach().cpu()

    def _count_padding(self, batch):
        """Adds a training batch's audio samples, and how many of them are
        padding, to the epoch's counts (``padding`` in the train stats).
        """
        audio = getattr(batch, "audio", None)
        if audio is None:
            return
        rows, longest = audio.data.shape[:2]
        real = float(audio.lengths.sum()) * longest
        self.audio_samples += rows * longest
        self.padded_samples += rows * longest - real

    def _finite_on_every_rank(self, loss):
        """Whether the loss is finite here and on every other process."""
        finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
        if torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        ):
            torch.distributed.all_reduce(
                finite, op=torch.distributed.ReduceOp.MIN
            )
        return bool(finite.item())

    def _skip_step(self, batch, loss):
        """Drops the step's gradients, counts it, stops past patience."""
        self.zero_grad(set_to_none=True)
        self.skipped_steps += 1
        self.consecutive_skipped += 1
        ids = list(getattr(batch, "id", []))
        logger.warning(
            "Non-finite training loss (%s) at step %d: step skipped (%d in a "
            "row, %d this epoch). Utterances: %s",
            float(loss),
            self.step,
            self.consecutive_skipped,
            self.skipped_steps,
            ", ".join(ids),
        )
        if self.consecutive_skipped > self.nonfinite_patience:
            raise RuntimeError(
                f"{self.consecutive_skipped} training steps in a row had a "
                f"non-finite loss (the last one's utterances: "
                f"{', '.join(ids)}). Check those files for silence, NaN or "
                "clipping, lower the learning rate or turbo_weight, or "
                "raise --nonfinite_patience (now "
                f"{self.nonfinite_patience})."
            )

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
        self.audio_samples, self.padded_samples = 0, 0.0
        self.predicted, self.targets, self.projected = [], [], {}
        self.ids = []
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
            steps = max(self.train_steps, 1)
            self.train_stats = {
                name: total / steps for name, total in self.train_sums.items()
            }
            self.train_stats["skipped_steps"] = self.skipped_steps
            # The fraction of the audio batches that was padding.
            self.train_stats["padding"] = self.padded_samples / max(
                self.audio_samples, 1
            )
            # The cost of an epoch, next to what it bought.
            self.train_stats["time_s"] = time.perf_counter() - self._stage_start
            if torch.cuda.is_available():
                peak = torch.cuda.max_memory_allocated() / 2**30
                self.train_stats["peak_GiB"] = peak
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
            ("lr", "optimizer", "lr_annealing"),
            ("encoder_lr", "encoder_optimizer", "encoder_lr_annealing"),
        )
        for key, optimizer_name, scheduler_name in schedules:
            optimizer = getattr(self, optimizer_name, None)
            if optimizer is None:
                continue
            rates[key] = optimizer.param_groups[0]["lr"]
            scheduler = getattr(self.hparams, scheduler_name, None)
            if scheduler is not None:
                _, new_lr = scheduler(epoch)
                sb.nnet.schedulers.update_learning_rate(optimizer, new_lr)
        return rates

    def _record_history(self, epoch, valid_stats):
        """Appends the epoch to history.jsonl and redraws the curves PNG."""
        if not sb.utils.distributed.if_main_process():
            return
        folder = self.hparams.output_folder
        path = os.path.join(folder, "history.jsonl")
        record = {
            "epoch": epoch,
            "train": self.train_stats,
            "valid": valid_stats,
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        with open(path, encoding="utf-8") as f:
            history = [json.loads(line) for line in f]
        plot_training_curves(
            history, os.path.join(folder, "training_curves.png")
        )

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Loads the best checkpoint and remembers what it scored.

        Arguments
        ---------
        max_key : str, optional
            Checkpoint meta key to maximise (``UA`` in the recipes).
        min_key : str, optional
            Checkpoint meta key to minimise.
        """
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        checkpoint = None
        if self.checkpointer is not None:
            checkpoint = self.checkpointer.find_checkpoint(
                max_key=max_key, min_key=min_key
            )
        self.selected_checkpoint = {} if checkpoint is None else checkpoint.meta

    def _gather_predictions(self):
        """Under DDP, every process's share of the stage, deduplicated.

        Validation and test are sharded across processes
        (:meth:`_shard_evaluation`; the sampler repeats a few items to even
        the shards out): the metrics must come from all shards, each
        utterance once. ``scored_per_process`` records the shard sizes.
        """
        if self._world_size() <= 1:
            return
        local = {
            "ids": self.ids,
            "predicted": torch.cat(self.predicted),
            "targets": torch.cat(self.targets),
            "projected": {m: torch.cat(v) for m, v in self.projected.items()},
        }
        shares = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shares, local)
        self.scored_per_process = [len(share["ids"]) for share in shares]
        seen = set()
        self.ids, self.predicted, self.targets, self.projected = [], [], [], {}
        for share in shares:
            keep = [r for r, i in enumerate(share["ids"]) if i not in seen]
            seen.update(share["ids"])
            index = torch.tensor(keep, dtype=torch.long)
            self.ids += [share["ids"][r] for r in keep]
            self.predicted.append(share["predicted"][index])
            self.targets.append(share["targets"][index])
            for m, embeddings in share["projected"].items():
                self.projected.setdefault(m, []).append(embeddings[index])

    def _evaluation_stats(self, stage_loss):
        """WA, UA and macro-F1 of the stage's predictions."""
        self._gather_predictions()
        self._metrics = classification_metrics(
            torch.cat(self.targets).numpy(),
            torch.cat(self.predicted).numpy(),
            num_classes=len(self.hparams.label_encoder),
        )
        stats = {
            "loss": stage_loss,
            **{k: self._metrics[k] for k in ("WA", "UA", "macro_F1")},
        }
        return {**stats, **self._representation_stats()}

    def _representation_stats(self):
        """Uniformity of each modality's contrastive embeddings and the
        alignment of every pair of modalities (same utterance = positive),
        over the whole stage; empty when the Turbo term is off.
        """
        projected = {m: torch.cat(v) for m, v in self.projected.items()}
        stats = {}
        for m, embeddings in projected.items():
            if len(embeddings) > 1:
                stats[f"unif_{m}"] = uniformity(embeddings)
        for m, n in itertools.combinations(projected, 2):
            stats[f"align_{m}_{n}"] = alignment(projected[m], projected[n])
        return stats

    def _write_test_report(self, stats):
        """Writes test metrics (JSON), per-utterance predictions (CSV) and
        the confusion matrix (CSV, PNG).
        """
        folder = self.hparams.output_folder
        encoder = self.hparams.label_encoder
        names = [encoder.ind2lab[i] for i in range(len(encoder))]
        suffix = ""
        if self.missing_modalities:
            suffix = "_without_" + "_".join(self.missing_modalities)
        csv_path, png_path = write_confusion_matrix(
            self._metrics["confusion"],
            names,
            os.path.join(folder, f"test_confusion{suffix}"),
        )
        # The validation scores of the checkpoint tested, so that model
        # selection can be audited (and done) on validation only.
        report = {
            **stats,
            "epoch": self.hparams.epoch_counter.current,
            "selected_on_valid": {
                k: v
                for k, v in getattr(self, "selected_checkpoint", {}).items()
                if k != "unixtime"
            },
        }
        # Wall time of the test, every process's share gathered (varies).
        report["test_seconds"] = time.perf_counter() - self._stage_start
        if self.missing_modalities:
            report["without"] = list(self.missing_modalities)
        else:
            # CPU time of this process so far (all its threads): preparation,
            # training and this test. A resumed run counts its last part only.
            report["process_cpu_minutes"] = time.process_time() / 60
        if getattr(self, "scored_per_process", None):
            report["scored_per_process"] = self.scored_per_process
        with open(
            os.path.join(folder, f"test_predictions{suffix}.csv"),
            "w",
            newline="",
            encoding="utf-8",
        ) as f:
            writer = csv.writer(f)
            writer.writerow(["ID", "label", "predicted"])
            for item_id, target, predicted in zip(
                self.ids, torch.cat(self.targets), torch.cat(self.predicted)
            ):
                writer.writerow(
                    [item_id, names[int(target)], names[int(predicted)]]
                )
        with open(
            os.path.join(folder, f"test_metrics{suffix}.json"),
            "w",
            encoding="utf-8",
        ) as f:
            json.dump(report, f, indent=2)
        logger.info(
            "Test%s WA %.4f, UA %.4f, macro-F1 %.4f; confusion matrix: %s",
            suffix.replace("_", " "),
            stats["WA"],
            stats["UA"],
            stats["macro_F1"],
            png_path,
        )
