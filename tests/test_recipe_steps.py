"""The shared recipe steps (speechbrain_turbo.recipe)."""

import speechbrain as sb
import torch

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
