"""Training batches: fixed-size, or sized by the duration of their audio.

:func:`train_loader_options` gives the training loader its options;
with ``dynamic_batching`` its batches come from
:class:`PairedDynamicBatchSampler` over :func:`duration_buckets`.

Authors
 * speechbrain-turbo contributors
"""

import numpy as np
from speechbrain.dataio.sampler import DynamicBatchSampler


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
