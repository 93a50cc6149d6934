"""Where TurboBrain departs from SpeechBrain's ``Brain`` (1.x): each method
names the upstream behaviour it works around.

:class:`SpeechBrainWorkarounds` is a mixin: ``TurboBrain`` lists it before
``speechbrain.Brain``, so these methods wrap (``super()``) or replace the
Brain's own. They concern data loading and DDP (worker seeding, batch
samplers' epochs, sharded evaluation, CPU (gloo) runs, a clean exit) and
the training step (non-finite losses skipped on every process together).

Where a SpeechBrain carries the general fix (``upstream/patches/``,
``docs/upstream.md``), :func:`speechbrain_has` says so and the workaround
steps aside: sampler epochs, BatchNorm under DDP on CPU, sharded evaluation,
loaders' generators, skipping a non-finite step.

Authors
 * speechbrain-turbo contributors
"""

import dataclasses
import functools
import gc
import unittest.mock

import speechbrain as sb
import torch
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)


@functools.cache
def speechbrain_has(fix):
    """Whether the running SpeechBrain has a fix of ``upstream/patches/``.

    Arguments
    ---------
    fix : str
        ``"batch_sampler_epochs"`` (a single-process batch sampler is told
        each epoch), ``"cpu_ddp_batchnorm"`` (no SyncBatchNorm under DDP on
        CPU), ``"shard_evaluation"`` (the ``--shard_evaluation`` option),
        ``"loader_generator"`` (each loader has a generator of its own) or
        ``"nonfinite_skip"`` (a non-finite loss is not backpropagated:
        ``check_loss_isfinite`` says whether to).

    Returns
    -------
    bool
        False also when SpeechBrain cannot be probed: the workaround stays.

    Example
    -------
    >>> isinstance(speechbrain_has("shard_evaluation"), bool)
    True
    """
    probes = {
        "batch_sampler_epochs": _probe_batch_sampler_epochs,
        "cpu_ddp_batchnorm": _probe_cpu_ddp_batchnorm,
        "shard_evaluation": _probe_shard_evaluation,
        "loader_generator": _probe_loader_generator,
        "nonfinite_skip": _probe_nonfinite_skip,
    }
    if fix not in probes:
        raise ValueError(
            f"Unknown SpeechBrain fix {fix!r}: one of {list(probes)}"
        )
    try:
        return bool(probes[fix]())
    except Exception as error:  # any failure to probe: keep ours
        logger.debug("Could not probe SpeechBrain for %s: %s", fix, error)
        return False


def _probe_batch_sampler_epochs():
    """Does ``Brain._train_loader_specifics`` adopt a batch sampler with
    ``set_epoch`` (so that ``fit`` tells it each epoch)?
    """

    class EpochAware:
        """A batch sampler stand-in."""

        def set_epoch(self, epoch):
            """Nothing to do."""

    probe = object.__new__(sb.Brain)
    probe.distributed_launch = False
    probe.train_sampler = None
    sampler = EpochAware()
    probe._train_loader_specifics([], {"batch_sampler": sampler})
    return probe.train_sampler is sampler


def _probe_cpu_ddp_batchnorm():
    """Does ``Brain._wrap_distributed`` leave BatchNorm alone on CPU?

    Runs the method on a BatchNorm module with DDP replaced by the identity
    (no process group needed) and looks at what comes back.
    """
    probe = object.__new__(sb.Brain)
    probe.distributed_launch = True
    probe.data_parallel_backend = False
    probe.distributed_backend = "gloo"
    probe.device = "cpu"
    probe.find_unused_parameters = False
    probe.modules = torch.nn.ModuleDict({"probe": torch.nn.BatchNorm1d(1)})
    with unittest.mock.patch.object(
        sb.core, "DDP", lambda module, **options: module
    ):
        probe._wrap_distributed()
    return not isinstance(probe.modules["probe"], torch.nn.SyncBatchNorm)


def _probe_shard_evaluation():
    """Is ``--shard_evaluation`` one of SpeechBrain's run options?"""
    from speechbrain.utils.run_opts import RunOptions

    return "shard_evaluation" in {
        f.name for f in dataclasses.fields(RunOptions)
    }


def _probe_loader_generator():
    """Does ``Brain.make_dataloader`` give a loader a generator of its own?"""
    probe = object.__new__(sb.Brain)
    probe.distributed_launch = False
    probe.shard_evaluation = False
    probe.checkpointer = None
    loader = probe.make_dataloader([0], sb.Stage.VALID, batch_size=1)
    return loader.generator is not None


def _probe_nonfinite_skip():
    """Does ``Brain.check_loss_isfinite`` return the verdict (which
    ``fit_batch`` then follows, not backpropagating a non-finite loss)?
    """
    probe = object.__new__(sb.Brain)
    probe.nonfinite_count = 0
    probe.nonfinite_patience = 0
    return probe.check_loss_isfinite(torch.tensor(1.0)) is True


# The Brain methods a workaround extends or calls, what for, and the fix that
# makes the workaround unnecessary. A SpeechBrain with neither the method nor
# the fix would silently lose the workaround: the Brain refuses to start.
NEEDED_BRAIN_METHODS = {
    "_train_loader_specifics": (
        "tell a batch sampler each epoch",
        "batch_sampler_epochs",
    ),
    "_wrap_distributed": ("run DDP on CPU (gloo)", "cpu_ddp_batchnorm"),
    "no_sync": ("skip non-finite training steps", "nonfinite_skip"),
    "optimizers_step": ("skip non-finite training steps", "nonfinite_skip"),
    "zero_grad": ("skip non-finite training steps", "nonfinite_skip"),
}


def check_speechbrain_methods():
    """Fails, naming what is missing, where the running SpeechBrain has
    neither a Brain method a workaround needs nor the fix that replaces it.

    ``setup.py`` admits any SpeechBrain from 1.1 on; the workarounds are
    tested on 1.1.2 and on SpeechBrain with ``upstream/patches``.

    Raises
    ------
    RuntimeError
        Naming the method, its use, this SpeechBrain and what to install.

    Example
    -------
    >>> check_speechbrain_methods()  # SpeechBrain 1.1: nothing missing
    """
    missing = [
        f"Brain.{method} (to {purpose})"
        for method, (purpose, fix) in NEEDED_BRAIN_METHODS.items()
        if not hasattr(sb.Brain, method) and not speechbrain_has(fix)
    ]
    if missing:
        raise RuntimeError(
            f"SpeechBrain {sb.__version__} ({sb.__path__[0]}) lacks "
            f"{', '.join(missing)}, which speechbrain_turbo needs, and the "
            "fix that would replace it (upstream/patches). Install a "
            "tested SpeechBrain: pip install 'speechbrain>=1.1,<1.2' "
            "(constraints.txt pins the tested set)."
        )


class SpeechBrainWorkarounds:
    """Mixin for a ``speechbrain.Brain`` subclass (see the module docstring).

    It reads the Brain's ``device``, ``distributed_launch``,
    ``find_unused_parameters``, ``modules`` and ``train_sampler``, the
    evaluation stage's ``ids``, ``predicted``, ``targets`` and ``projected``
    lists (one entry per batch), the training counters ``skipped_steps``
    (per epoch) and ``consecutive_skipped``, and the flag
    ``nonfinite_in_accumulation`` (set by the Brain at each stage start).

    Example
    -------
    >>> class MyBrain(SpeechBrainWorkarounds, sb.Brain):
    ...     pass
    >>> MyBrain._world_size()  # no process group
    1
    """

    def __init__(self, *args, **kwargs):
        check_speechbrain_methods()
        super().__init__(*args, **kwargs)

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
        if "generator" not in loader_kwargs and not speechbrain_has(
            "loader_generator"
        ):
            generator = torch.Generator()
            generator.manual_seed(torch.initial_seed() + int(stage.value))
            loader_kwargs["generator"] = generator
        if stage != sb.Stage.TRAIN and self._world_size() > 1:
            if speechbrain_has("shard_evaluation"):
                # SpeechBrain shards the loader (and averages the stage
                # loss over the processes) itself.
                self.shard_evaluation = True
            else:
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
        if speechbrain_has("batch_sampler_epochs"):
            return loader_kwargs
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

    def _wrap_distributed(self):
        """SpeechBrain's DDP wrapping, with BatchNorm left alone on CPU.

        SpeechBrain turns every BatchNorm into SyncBatchNorm under DDP, but
        SyncBatchNorm only runs on GPUs: a CPU run with the gloo backend
        would stop at its first batch. DDP's buffer broadcast still keeps
        the running statistics of all processes equal to the first one's.
        """
        on_cpu = torch.device(self.device).type == "cpu"
        if not (self.distributed_launch and on_cpu) or speechbrain_has(
            "cpu_ddp_batchnorm"
        ):
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

    def fit_batch(self, batch):
        """One training step; a step whose loss is NaN or Inf is skipped.

        As SpeechBrain's ``fit_batch`` (autocast, gradient accumulation,
        clipping), except that a non-finite loss is not backpropagated and
        the optimizer step of its accumulation window is skipped, dropping
        the window's gradients (:meth:`check_loss_isfinite` counts and logs
        it, and stops training past ``--nonfinite_patience``). Under DDP
        every process skips when any one of them must. SpeechBrain with the
        fix (``speechbrain_has("nonfinite_skip")``) runs the step itself.

        Arguments
        ---------
        batch : PaddedBatch
            The training batch.

        Returns
        -------
        torch.Tensor
            The detached loss (non-finite for a skipped step).
        """
        self._fit_batch_ids = list(getattr(batch, "id", []))
        if speechbrain_has("nonfinite_skip"):
            return super().fit_batch(batch)
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                loss = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            if self.check_loss_isfinite(loss):
                self.scaler.scale(
                    loss / self.grad_accumulation_factor
                ).backward()
            else:
                self.nonfinite_in_accumulation = True
        stepped = should_step and not self.nonfinite_in_accumulation
        if stepped:
            self.optimizers_step()
        elif should_step:
            self.zero_grad(set_to_none=True)
            self.nonfinite_in_accumulation = False
        self.on_fit_batch_end(batch, outputs, loss, stepped)
        return loss.detach().cpu()

    def check_loss_isfinite(self, loss):
        """Whether the training loss is finite here and on every other
        process; a non-finite one is counted and logged.

        The step is counted in ``skipped_steps`` (the epoch's train stats)
        and logged with its utterance ids; after more than
        ``--nonfinite_patience`` such steps in a row training stops with an
        error naming them. (SpeechBrain's own counts per epoch, not in a
        row, and names no utterance.)

        Arguments
        ---------
        loss : torch.Tensor
            The training loss, before ``backward()``.

        Returns
        -------
        bool
            Whether the loss is finite on every process.
        """
        finite = torch.isfinite(loss.detach()).all().to(torch.int32)
        if torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        ):
            finite = finite.reshape(1)
            torch.distributed.all_reduce(
                finite, op=torch.distributed.ReduceOp.MIN
            )
        if bool(finite.item()):
            self.consecutive_skipped = 0
            return True
        self.skipped_steps += 1
        self.consecutive_skipped += 1
        ids = getattr(self, "_fit_batch_ids", [])
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
        return False
