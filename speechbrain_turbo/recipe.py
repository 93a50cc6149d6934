"""The steps every Turbo recipe runs once its manifests exist.

A recipe's ``train.py`` parses its arguments, loads its hparams, starts the
experiment folder (:func:`start_experiment`), prepares its corpus, then
calls :func:`train_and_test`: screening, tokenizer and datasets, training
with the best checkpoint chosen on validation UA, the test, and the test
again without each modality of ``test_without``.

Authors
 * speechbrain-turbo contributors
"""

import numpy as np
import speechbrain as sb
from speechbrain.dataio.sampler import DynamicBatchSampler
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.brain import TurboBrain
from speechbrain_turbo.dataio import datasets_from_hparams, read_manifest
from speechbrain_turbo.errors import InputError
from speechbrain_turbo.experiment import (
    check_run_identity,
    lock_output_folder,
    write_run_record,
)

logger = get_logger(__name__)


def start_experiment(hparams, hparams_file, overrides):
    """Creates the output folder, refusing one made with other settings or
    in use by another process.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``output_folder``).
    hparams_file : str
        The recipe's hparams file, copied into the folder.
    overrides : str
        The command-line overrides, recorded with it.

    Returns
    -------
    None
    """
    # One process trains in a folder at a time (under DDP: the main one
    # holds the lock for all).
    if sb.utils.distributed.if_main_process():
        lock_output_folder(hparams["output_folder"])
    # Never resume another configuration's checkpoints from this folder.
    run_on_main(
        check_run_identity,
        args=[hparams["output_folder"], hparams_file, overrides],
    )
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )


def train_and_test(hparams, run_opts, manifests, label_key):
    """Trains a :class:`TurboBrain` on the manifests and tests it.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters of a Turbo recipe.
    run_opts : dict
        SpeechBrain's run options (device, DDP, precision...).
    manifests : dict
        ``train``, ``valid`` and ``test`` manifest paths (JSON or CSV).
    label_key : str
        The manifests' label field.

    Returns
    -------
    TurboBrain
        The trained brain, its best checkpoint loaded.
    """
    # Packages, code revision and manifest checksums, for reproduction.
    run_on_main(write_run_record, args=[hparams["output_folder"], manifests])
    datasets = datasets_from_hparams(hparams, manifests, label_key=label_key)
    num_classes = len(hparams["label_encoder"])
    if num_classes != hparams["out_n_neurons"]:
        raise InputError(
            f"The screened training set has {num_classes} classes but "
            f"out_n_neurons is {hparams['out_n_neurons']}"
            + _lost_labels(hparams, manifests["train"], label_key)
            + f": set --out_n_neurons={num_classes} or fix the manifest"
        )
    hparams["label_encoder"].expect_len(num_classes)

    brain = TurboBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=command_line_checkpoint_interval(hparams, run_opts),
        checkpointer=hparams["checkpointer"],
    )
    # Sorted by duration, evaluation batches hold utterances of similar
    # length (little padding); shards under DDP stay sorted.
    for split in ("valid", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="duration")
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_loader_options(hparams, datasets["train"]),
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    brain.evaluate(
        datasets["test"],
        max_key="UA",
        test_loader_kwargs=hparams["test_dataloader_options"],
    )
    # How the model copes without a modality (e.g. no transcript).
    for missing in hparams["test_without"]:
        if missing in hparams["modalities"] and len(hparams["modalities"]) > 1:
            brain.evaluate_without(
                [missing],
                datasets["test"],
                max_key="UA",
                test_loader_kwargs=hparams["test_dataloader_options"],
            )
    brain.leave_process_group()
    return brain


def train_loader_options(hparams, train_set):
    """The training loader's options: ``dataloader_options``, with batches
    sized by duration when ``dynamic_batching`` is on.

    Duration-sized batches come from SpeechBrain's ``DynamicBatchSampler``
    (the options under ``dynamic_batch_sampler``: ``max_batch_length`` in
    seconds of audio, ``num_buckets``, ``max_batch_ex``...): utterances of
    similar duration share a batch, so little of it is padding, and the
    number of utterances per batch varies (never one alone: see
    :class:`PairedDynamicBatchSampler`). The buckets' boundaries are
    spaced geometrically over the training durations
    (:func:`duration_buckets`) unless
    ``bucket_boundaries`` is given. Its shuffling follows ``seed``. Under
    DDP, SpeechBrain shuffles the batches' order again (its own seed, the
    epoch), gives each process every N-th batch and repeats a few so that
    every process gets as many.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``dataloader_options``,
        ``dynamic_batching``, ``dynamic_batch_sampler``, ``seed``).
    train_set : DynamicItemDataset
        The screened training set (its items carry ``duration``).

    Returns
    -------
    dict
        Keyword arguments of the training loader.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = {f"u{i}": {"duration": 1.0 + i} for i in range(6)}
    >>> hparams = {
    ...     "dataloader_options": {"batch_size": 2, "num_workers": 0},
    ...     "dynamic_batching": True,
    ...     "dynamic_batch_sampler": {"max_batch_length": 8, "num_buckets": 3},
    ...     "seed": 1,
    ... }
    >>> options = train_loader_options(hparams, DynamicItemDataset(data))
    >>> sorted(options)
    ['batch_sampler', 'num_workers']
    >>> batches = list(options["batch_sampler"])
    >>> sorted(i for batch in batches for i in batch)  # each utterance once
    [0, 1, 2, 3, 4, 5]
    """
    options = dict(hparams["dataloader_options"])
    if not hparams["dynamic_batching"]:
        return options
    # The batch sampler takes the place of these (DataLoader refuses both).
    for key in ("batch_size", "shuffle", "sampler", "drop_last"):
        options.pop(key, None)
    sampler_options = dict(hparams["dynamic_batch_sampler"])
    if "bucket_boundaries" not in sampler_options:
        sampler_options["bucket_boundaries"] = duration_buckets(
            train_set, sampler_options.pop("num_buckets")
        )
    options["batch_sampler"] = PairedDynamicBatchSampler(
        train_set,
        length_func=_duration,
        seed=hparams["seed"],
        **sampler_options,
    )
    return options


class PairedDynamicBatchSampler(DynamicBatchSampler):
    """SpeechBrain's ``DynamicBatchSampler`` without batches of one utterance.

    A bucket's last, partial batch can hold a single utterance; training
    BatchNorm on one row fails ("Expected more than 1 value per channel"),
    and an InfoNCE row without negatives teaches nothing. Each such
    utterance joins the batch whose longest utterance is nearest to it in
    duration (another lone one, or a batch then one utterance over its
    budget), each batch taking at most one while others can. Arguments as
    for ``DynamicBatchSampler``.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = {f"u{i}": {"duration": d} for i, d in enumerate([1, 5, 9])}
    >>> sampler = PairedDynamicBatchSampler(
    ...     DynamicItemDataset(data), max_batch_length=20,
    ...     bucket_boundaries=[2, 6, 10], length_func=_duration,
    ... )
    >>> sorted(sorted(batch) for batch in sampler)
    [[0, 1, 2]]
    """

    def _permute_batches(self):
        """Merges the single-utterance batches, then orders the batches."""

        def longest(batch):
            """The batch's longest utterance (its sort key)."""
            return max(self._ex_lengths[str(i)] for i in batch)

        # Each batch takes at most one lone utterance while others can.
        grown = []
        for lone in sorted(
            (b for b in self._batches if len(b) == 1), key=longest
        ):
            if any(lone is b for b in grown) or len(self._batches) < 2:
                continue
            others = [b for b in self._batches if b is not lone]
            fresh = [b for b in others if not any(b is g for g in grown)]
            nearest = min(
                fresh or others, key=lambda b: abs(longest(b) - longest(lone))
            )
            self._batches = [b for b in self._batches if b is not lone]
            nearest.extend(lone)
            grown.append(nearest)
        super()._permute_batches()


def duration_buckets(dataset, num_buckets):
    """Bucket boundaries spaced geometrically over the utterances' durations.

    SpeechBrain's ``DynamicBatchSampler``, given ``num_buckets``, spreads
    the boundaries over a log-normal scaled to ``max_batch_length``: with a
    budget of many utterances per batch, most utterances then share its
    first bucket and are padded to its longest. Boundaries at a constant
    ratio ``r`` from the shortest duration to the longest bound the padding
    of every bucket alike (its longest is at most ``r`` times its shortest),
    where quantiles leave the long tail of speech durations in one wide
    last bucket.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Items with a ``duration`` (seconds).
    num_buckets : int
        How many buckets (fewer when durations repeat).

    Returns
    -------
    list of float
        Increasing upper boundaries; the last is the longest duration.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = {f"u{i}": {"duration": d} for i, d in enumerate([1, 2, 3, 4])}
    >>> duration_buckets(DynamicItemDataset(data), 2)
    [2.0, 4.0]
    >>> duration_buckets(DynamicItemDataset({"a": {"duration": 2.0}}), 5)
    [2.0]
    """
    durations = [_duration(dataset.data[i]) for i in dataset.data_ids]
    bounds = np.geomspace(min(durations), max(durations), num_buckets + 1)
    return [float(b) for b in np.unique(bounds[1:])]


def _duration(entry):
    """An utterance's duration in seconds, from its screened entry."""
    return float(entry["duration"])


def command_line_checkpoint_interval(hparams, run_opts):
    """Lets a checkpoint interval given on the command line replace the
    other kind set in the hparams file.

    SpeechBrain stops when both ``ckpt_interval_minutes`` and
    ``ckpt_interval_steps`` are set; with ``--ckpt_interval_steps`` on the
    command line and ``ckpt_interval_minutes`` in the file (or the reverse),
    the command line wins and the log says so.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options from the command line.

    Returns
    -------
    dict
        The run options to give the Brain.

    Example
    -------
    >>> command_line_checkpoint_interval(
    ...     {"ckpt_interval_minutes": 15}, {"ckpt_interval_steps": 100}
    ... )
    {'ckpt_interval_steps': 100, 'ckpt_interval_minutes': 0}
    """
    run_opts = dict(run_opts)
    for given, other in (
        ("ckpt_interval_steps", "ckpt_interval_minutes"),
        ("ckpt_interval_minutes", "ckpt_interval_steps"),
    ):
        from_file = hparams.get(other) or 0
        if (run_opts.get(given) or 0) > 0 and other not in run_opts:
            if from_file > 0:
                logger.info(
                    "--%s=%s on the command line replaces %s: %s of the "
                    "hparams file.",
                    given,
                    run_opts[given],
                    other,
                    from_file,
                )
                run_opts[other] = 0
    return run_opts


def _lost_labels(hparams, train_manifest, label_key):
    """Names the training labels that screening removed every example of
    (``on_bad_input: skip``), for the class-count error.
    """
    listed = {
        entry.get(label_key)
        for _, _, entry in read_manifest(train_manifest, hparams["data_folder"])
    }
    kept = set(hparams["label_encoder"].lab2ind)
    lost = sorted(str(label) for label in listed - kept if label)
    if not lost:
        return ""
    return (
        f" (every training example of {lost} was left out as a bad input, "
        f"see {hparams['output_folder']}/rejects.csv)"
    )
