"""The shared recipe steps (speechbrain_turbo.recipe) and the training
batches (speechbrain_turbo.batching)."""

import speechbrain as sb
import torch

from speechbrain_turbo.batching import train_loader_options
from speechbrain_turbo.recipe import command_line_checkpoint_interval


def test_command_line_checkpoint_interval_replaces_the_files_other_kind(
    caplog,
):
    hparams = {"ckpt_interval_minutes": 15}
    with caplog.at_level("INFO"):
        run_opts = command_line_checkpoint_interval(
            hparams, {"ckpt_interval_steps": 50}
        )
    assert "replaces ckpt_interval_minutes" in caplog.text
    # SpeechBrain accepts the result (it exits when both are set).
    brain = sb.Brain(
        modules={"m": torch.nn.Linear(1, 1)},
        hparams=hparams,
        run_opts={"device": "cpu", **run_opts},
    )
    assert brain.ckpt_interval_steps == 50
    assert brain.ckpt_interval_minutes == 0


def test_checkpoint_intervals_are_left_alone_otherwise():
    both = {"ckpt_interval_steps": 5, "ckpt_interval_minutes": 3}
    assert command_line_checkpoint_interval({}, both) == both
    assert (
        command_line_checkpoint_interval({"ckpt_interval_minutes": 15}, {})
        == {}
    )
    assert command_line_checkpoint_interval(
        {"ckpt_interval_steps": 10}, {"ckpt_interval_minutes": 2}
    ) == {"ckpt_interval_minutes": 2, "ckpt_interval_steps": 0}


def duration_hparams(dynamic=True, **sampler):
    return {
        "dataloader_options": {"batch_size": 2, "shuffle": True},
        "dynamic_batching": dynamic,
        "dynamic_batch_sampler": {
            "max_batch_length": 6,
            "num_buckets": 4,
            **sampler,
        },
        "seed": 3,
    }


def duration_dataset(durations):
    from speechbrain.dataio.dataset import DynamicItemDataset

    return DynamicItemDataset(
        {f"u{i}": {"duration": d} for i, d in enumerate(durations)}
    )


def test_fixed_batches_keep_the_dataloader_options():
    options = train_loader_options(
        duration_hparams(dynamic=False), duration_dataset([1.0] * 4)
    )
    assert options == {"batch_size": 2, "shuffle": True}


def test_duration_sized_batches_hold_similar_durations_within_the_budget():
    durations = [0.5, 0.6, 0.7, 2.9, 3.0, 0.55, 0.65, 2.8, 1.5, 1.4] * 3
    options = train_loader_options(
        duration_hparams(), duration_dataset(durations)
    )
    # DataLoader refuses batch_size / shuffle beside a batch sampler.
    assert set(options) == {"batch_sampler"}
    batches = list(options["batch_sampler"])
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    sizes = {len(b) for b in batches}
    assert len(sizes) > 1  # as many utterances as fit, not a fixed count
    for batch in batches:
        lengths = [durations[i] for i in batch]
        assert len(batch) > 1
        # Within the budget, or over it by the one utterance of a bucket
        # that would have been alone.
        assert (len(batch) - 1) * max(lengths) <= 6 + 1e-9
        # Short utterances are not padded to a long one.
        assert max(lengths) / min(lengths) < 2.5


def test_duration_sized_batches_follow_the_seed():
    durations = [0.5 + 0.1 * i for i in range(30)]
    first = list(
        train_loader_options(duration_hparams(), duration_dataset(durations))[
            "batch_sampler"
        ]
    )
    again = list(
        train_loader_options(duration_hparams(), duration_dataset(durations))[
            "batch_sampler"
        ]
    )
    other = duration_hparams()
    other["seed"] = 4
    third = list(
        train_loader_options(other, duration_dataset(durations))[
            "batch_sampler"
        ]
    )
    assert first == again
    assert first != third


def test_duration_sized_batches_never_hold_one_utterance():
    """One utterance per bucket (the buckets' partial batches) would give
    batches of one, which BatchNorm refuses in training: each joins the
    batch nearest in duration."""
    durations = [1.0, 1.05, 1.1, 1.15, 2.0, 3.0, 4.5, 6.0, 8.0]
    options = train_loader_options(
        duration_hparams(max_batch_length=4.5, num_buckets=8),
        duration_dataset(durations),
    )
    sampler = options["batch_sampler"]
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(9))
        assert min(len(b) for b in batches) >= 2


def test_a_budget_of_one_utterance_gives_pairs_not_one_batch():
    options = train_loader_options(
        duration_hparams(max_batch_length=1, num_buckets=1),
        duration_dataset([1.0] * 8),
    )
    assert sorted(len(b) for b in options["batch_sampler"]) == [2, 2, 2, 2]
