"""A run killed with SIGKILL mid-epoch resumes from its last intra-epoch
checkpoint when the same command runs again, and ends with exactly the test
metrics of an uninterrupted run (CPU, same seed), with fixed and with
duration-sized batches.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow

RECIPE = os.path.join(REPO, "recipes", "IEMOCAP", "turbo")
COMMAND = [
    "train.py",
    "hparams/demo.yaml",
    "--demo_utterances_per_speaker=8",
    "--number_of_epochs=2",
    "--batch_size=4",
    "--channels=16",
    "--fusion_dim=16",
    "--projection_dim=8",
    "--token_embedding_dim=8",
    "--vocab_size=80",
    # An intra-epoch checkpoint after every step.
    "--ckpt_interval_steps=1",
]


BATCHING = {
    "fixed": [],
    # About 4 utterances of the tiny corpus per batch.
    "duration": ["--dynamic_batching=True", "--max_batch_length=12"],
}


def start(corpus, output, batching):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, *COMMAND, *batching, f"--data_folder={corpus}"]
    return subprocess.Popen(
        [*command, f"--output_folder={output}"],
        cwd=RECIPE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def intra_epoch_checkpoints(output):
    save = output / "save"
    if not save.is_dir():
        return []
    found = []
    for folder in save.glob("CKPT*"):
        meta = folder / "CKPT.yaml"
        if meta.exists() and "brain_intra_epoch_ckpt" in meta.read_text():
            found.append(folder)
    return found


def finish(process):
    log, _ = process.communicate(timeout=600)
    assert process.returncode == 0, log[-4000:]
    return log


@pytest.mark.parametrize("batching", list(BATCHING))
def test_killed_run_resumes_and_matches_an_uninterrupted_one(
    tmp_path, tiny_corpus, batching
):
    options = BATCHING[batching]
    reference = tmp_path / "uninterrupted"
    finish(start(tiny_corpus, reference, options))

    output = tmp_path / "killed"
    process = start(tiny_corpus, output, options)
    # Kill it in the second epoch, once it has saved an intra-epoch
    # checkpoint there.
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        history = output / "history.jsonl"
        if history.exists() and intra_epoch_checkpoints(output):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "test_metrics.json").exists()
    history = (output / "history.jsonl").read_text().splitlines()
    assert len(history) == 1  # killed inside epoch 2

    log = finish(start(tiny_corpus, output, options))
    assert "Loading a checkpoint" in log
    if options:
        assert "DynamicBatchSampler" in (output / "log.txt").read_text()
    resumed = json.loads((output / "test_metrics.json").read_text())
    expected = json.loads((reference / "test_metrics.json").read_text())
    # Only the CPU and wall times may differ.
    for timing in ("process_cpu_minutes", "test_seconds", "scoring_seconds"):
        resumed.pop(timing)
        expected.pop(timing)
    assert resumed == expected
