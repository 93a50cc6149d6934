"""End-to-end runs of the IEMOCAP recipe on a tiny synthesised corpus."""

import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import DEMO_RECIPE, TINY, run_python, train_demo_recipe

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow

RECIPE = DEMO_RECIPE


def recipe_command(tmp_path, output, *overrides):
    """Runs train.py on the tiny corpus; returns the CompletedProcess."""
    command = [
        sys.executable,
        "train.py",
        "hparams/demo.yaml",
        f"--data_folder={tmp_path / 'corpus'}",
        f"--output_folder={output}",
        *TINY,
        *overrides,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        command, cwd=RECIPE, env=env, capture_output=True, text=True
    )


def run_recipe(tmp_path, name, *overrides):
    output = tmp_path / name
    result = recipe_command(tmp_path, output, *overrides)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result.stdout + result.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_run, tiny_corpus):
    """The Turbo run (conftest's ``demo_run``), a baseline run (on a demo
    corpus the recipe synthesises) and the Turbo run's command again."""
    tmp_path = tmp_path_factory.mktemp("recipe")
    baseline = run_recipe(
        tmp_path, "baseline", "--turbo_weight=0", "--twin_pass=False"
    )
    output = tmp_path / "turbo_again"
    again = train_demo_recipe(tiny_corpus, output)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    turbo_again = output, again.stdout + again.stderr
    return tmp_path, demo_run, baseline, turbo_again


def read_manifest(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def test_demo_corpus_is_synthesised_in_iemocap_layout(runs):
    tmp_path = runs[0]
    corpus = tmp_path / "corpus"
    assert (corpus / "demo_corpus.json").exists()
    for session in range(1, 6):
        assert (corpus / f"Session{session}" / "sentences" / "wav").is_dir()


def test_turbo_run_writes_metrics_confusion_and_log(runs):
    (output, log) = runs[1]
    metrics = json.loads((output / "test_metrics.json").read_text())
    for key in ("WA", "UA", "macro_F1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert "Test WA" in log and "UA" in log and "macro-F1" in log

    png = (output / "test_confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    with open(output / "test_confusion.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert sorted(r[0] for r in rows[1:]) == ["ang", "hap", "neu", "sad"]
    test_set = read_manifest(output / "test.json")
    assert sum(int(c) for r in rows[1:] for c in r[1:]) == len(test_set)
    correct = sum(int(rows[i][i]) for i in range(1, len(rows)))
    assert metrics["WA"] == pytest.approx(correct / len(test_set))

    epochs = (output / "train_log.txt").read_text().splitlines()
    train_lines = [line for line in epochs if line.startswith("epoch")]
    assert len(train_lines) == 2
    for field in ("train CE", "in_modal", "cross_modal", "train total"):
        assert field in train_lines[0]
    for field in ("valid WA", "valid UA", "valid macro_F1"):
        assert field in train_lines[0]
    for field in (
        "align_audio",
        "align_text",
        "unif_audio",
        "align_audio_text",
    ):
        assert field in train_lines[0]
    assert "align_audio_text" in metrics

    # The test again, without transcripts.
    without = json.loads(
        (output / "test_metrics_without_text.json").read_text()
    )
    assert without["without"] == ["text"] and 0.0 <= without["UA"] <= 1.0
    assert "Test without text WA" in log

    history = (output / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2]
    curves = (output / "training_curves.png").read_bytes()
    assert curves.startswith(b"\x89PNG")


def test_test_session_speakers_never_in_train_or_valid(runs):
    output = runs[1][0]
    test_speakers = {
        u["speaker"] for u in read_manifest(output / "test.json").values()
    }
    assert {
        u["session"] for u in read_manifest(output / "test.json").values()
    } == {5}
    for split in ("train", "valid"):
        speakers = {
            u["speaker"]
            for u in read_manifest(output / f"{split}.json").values()
        }
        assert not speakers & test_speakers


def test_baseline_has_no_contrastive_term(runs):
    output = runs[2][0]
    log = (output / "train_log.txt").read_text()
    assert "train CE" in log
    assert "in_modal" not in log and "cross_modal" not in log
    assert (output / "test_metrics.json").exists()


def test_output_folder_of_another_configuration_is_refused(runs, tiny_corpus):
    turbo_output = runs[3][0]  # this module's own
    result = train_demo_recipe(
        tiny_corpus, turbo_output, "--turbo_weight=0", "--twin_pass=False"
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "holds a run made with other settings" in output
    assert "turbo_weight (was the file's value, now 0)" in output
    # A user's mistake: one line, no trace.
    assert "Traceback" not in output
    (line,) = [x for x in result.stderr.splitlines() if "other settings" in x]
    assert line.startswith("train.py: ")
    # The finished Turbo run is untouched.
    assert (turbo_output / "test_metrics.json").exists()


def test_same_seed_gives_the_same_metrics_twice(runs):
    first = json.loads((runs[1][0] / "test_metrics.json").read_text())
    again = json.loads((runs[3][0] / "test_metrics.json").read_text())
    for metrics in (first, again):
        metrics.pop("selected_on_valid")
        # Times differ run to run.
        assert metrics.pop("process_cpu_minutes") > 0
        stage_seconds = metrics.pop("test_seconds")
        assert 0 < metrics.pop("scoring_seconds") <= stage_seconds
    assert first == again


def test_run_records_packages_code_and_manifest_checksums(runs):
    import hashlib

    import speechbrain
    import torch

    output = runs[1][0]
    record = json.loads((output / "run_record.json").read_text())
    assert record["speechbrain"]["version"] == speechbrain.__version__
    running = os.path.dirname(speechbrain.__file__)
    assert record["speechbrain"]["path"] == running
    assert record["torch"]["version"] == torch.__version__
    for split in ("train", "valid", "test"):
        data = (output / f"{split}.json").read_bytes()
        expected = hashlib.sha256(data).hexdigest()
        assert record["manifests"][split]["sha256"] == expected
    # SpeechBrain's copy of the hyperparameters holds the resolved values.
    resolved = (output / "hyperparams.yaml").read_text()
    assert "number_of_epochs: 2" in resolved
    assert f"output_folder: {output}" in resolved


def test_bad_inputs_stop_the_run_or_are_skipped_and_listed(
    tmp_path, tiny_corpus
):
    import shutil

    corpus = tmp_path / "broken_corpus"
    shutil.copytree(tiny_corpus, corpus)
    # Without its demo marker the folder is treated as a real corpus.
    (corpus / "demo_corpus.json").unlink()
    wavs = sorted((corpus / "Session2" / "sentences" / "wav").rglob("*.wav"))
    wavs[0].unlink()
    data = wavs[1].read_bytes()
    wavs[1].write_bytes(data[: len(data) // 2])

    command = [
        "train.py",
        "hparams/demo.yaml",
        f"--data_folder={corpus}",
        *TINY,
    ]
    stopped = run_python(
        RECIPE, *command, f"--output_folder={tmp_path / 'error'}"
    )
    assert stopped.returncode != 0
    log = stopped.stdout + stopped.stderr
    assert f"entry '{wavs[0].stem}', column wav: no file '{wavs[0]}'" in log

    output = tmp_path / "skip"
    skipped = run_python(
        RECIPE, *command, f"--output_folder={output}", "--on_bad_input=skip"
    )
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    with open(output / "rejects.csv", encoding="utf-8") as f:
        rejects = {row["id"]: row for row in csv.DictReader(f)}
    assert set(rejects) == {wavs[0].stem, wavs[1].stem}
    assert rejects[wavs[1].stem]["reason"].startswith("truncated audio")
    # Used + rejected = what the preparation wrote.
    for split in ("train", "valid", "test"):
        prepared = read_manifest(output / f"{split}.json")
        used = read_manifest(output / f"{split}_screened.json")
        left_out = [r for r in rejects.values() if r["split"] == split]
        assert len(used) + len(left_out) == len(prepared)
