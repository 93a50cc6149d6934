"""FallbackCheckpointer: a broken checkpoint (what a kill during a save
leaves) is named and passed over, in recovery for training and for test."""

import logging

import pytest
import torch

from speechbrain_turbo.checkpoints import FallbackCheckpointer
from speechbrain_turbo.errors import reported_input_errors


def saved(tmp_path, metas):
    """A model and its checkpoints, one per meta, oldest first."""
    model = torch.nn.Linear(2, 2)
    checkpointer = FallbackCheckpointer(tmp_path / "save", {"model": model})
    checkpoints = []
    for i, meta in enumerate(metas):
        with torch.no_grad():
            model.weight.fill_(float(i))
        checkpoints.append(
            checkpointer.save_checkpoint(meta=meta, name=f"ckpt{i}")
        )
    return model, checkpointer, checkpoints


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_newest_checkpoint_gives_way_to_the_previous(
    tmp_path, caplog
):
    model, checkpointer, checkpoints = saved(tmp_path, [{}, {}, {}])
    truncate(checkpoints[2].paramfiles["model"])
    with caplog.at_level(logging.WARNING):
        recovered = checkpointer.recover_if_possible()
    assert recovered.path == checkpoints[1].path
    assert float(model.weight[0, 0]) == 1.0
    (warning,) = [
        r.getMessage() for r in caplog.records if "does not load" in r.message
    ]
    assert str(checkpoints[2].path) in warning and "does not load" in warning


def test_an_empty_ckpt_yaml_is_named_and_skipped(tmp_path, caplog):
    model, checkpointer, checkpoints = saved(tmp_path, [{}, {}])
    (checkpoints[1].path / "CKPT.yaml").write_text("")
    with caplog.at_level(logging.WARNING):
        recovered = checkpointer.recover_if_possible()
    assert recovered.path == checkpoints[0].path
    assert f"Ignoring checkpoint {checkpoints[1].path}" in caplog.text


def test_the_best_by_a_key_falls_back_to_the_next_best(tmp_path):
    model, checkpointer, checkpoints = saved(
        tmp_path, [{"UA": 0.5}, {"UA": 0.9}, {"UA": 0.7}]
    )
    truncate(checkpoints[1].paramfiles["model"])
    recovered = checkpointer.recover_if_possible(max_key="UA")
    assert recovered.meta["UA"] == 0.7
    assert float(model.weight[0, 0]) == 2.0


def test_no_loadable_checkpoint_is_one_clear_error(tmp_path):
    _, checkpointer, checkpoints = saved(tmp_path, [{}, {}])
    for checkpoint in checkpoints:
        truncate(checkpoint.paramfiles["model"])
    with pytest.raises(RuntimeError, match="None of the 2 checkpoint"):
        checkpointer.recover_if_possible()
    # A user's copy or disk to fix: train.py says it in one line.
    with pytest.raises(SystemExit, match=": None of the 2 checkpoint"):
        with reported_input_errors():
            checkpointer.recover_if_possible()
    assert (
        FallbackCheckpointer(tmp_path / "empty").recover_if_possible() is None
    )
