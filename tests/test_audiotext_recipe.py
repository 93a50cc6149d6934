"""The generic audio-text recipe (recipes/AudioText/turbo) on generated CSV
manifests of real wav files: small and pretrained encoders, bad manifests.
"""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, TINY_SMALL_ENCODERS, run_python, run_under_torchrun
from speechbrain.dataio import audio_io

from speechbrain_turbo.random_hf_models import (
    save_random_speech_model,
    save_random_text_model,
    save_random_whisper_model,
)

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow

RECIPE = os.path.join(REPO, "recipes", "AudioText", "turbo")
# Three classes, each with its own pitch and words.
CLASSES = {
    "calm": (180.0, ["all is quiet here", "we can rest now"]),
    "tense": (320.0, ["watch out right now", "this is not safe"]),
    "glad": (250.0, ["what a lovely day", "we did it at last"]),
}
TINY_SMALL = [*TINY_SMALL_ENCODERS, "--vocab_size=30"]
TINY_PRETRAINED = [
    "--number_of_epochs=1",
    "--batch_size=8",
    "--num_workers=0",
    "--fusion_dim=16",
    "--projection_dim=8",
]
COUNTS = {"train": 10, "valid": 4, "test": 4}


def write_manifests(folder):
    """Writes wav files and train/valid/test CSVs (paths via $data_root)."""
    generator = torch.Generator().manual_seed(0)
    (folder / "wavs").mkdir(parents=True)
    paths = {}
    for split, per_class in COUNTS.items():
        rows = []
        for label, (pitch, sentences) in CLASSES.items():
            for i in range(per_class):
                utt = f"{split}_{label}_{i}"
                seconds = 0.5 + 0.1 * (i % 4)
                t = torch.arange(int(16000 * seconds)) / 16000
                wav = 0.3 * torch.sin(2 * math.pi * pitch * t)
                wav += 0.05 * torch.randn(len(t), generator=generator)
                audio_io.save(
                    str(folder / "wavs" / f"{utt}.wav"), wav[None], 16000
                )
                rows.append(
                    {
                        "ID": utt,
                        "wav": f"$data_root/wavs/{utt}.wav",
                        "text": sentences[i % 2].capitalize() + ".",
                        "label": label,
                        "duration": seconds,
                        "speaker": f"spk{i % 3}",
                    }
                )
        paths[split] = folder / f"{split}.csv"
        write_csv(paths[split], rows)
    return paths


def write_csv(path, rows, columns=None):
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run_recipe(hparams, data, output, manifests, *overrides):
    return run_python(
        RECIPE,
        "train.py",
        hparams,
        f"--data_folder={data}",
        f"--train_csv={manifests['train']}",
        f"--valid_csv={manifests['valid']}",
        f"--test_csv={manifests['test']}",
        f"--output_folder={output}",
        *overrides,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audiotext")
    return folder, write_manifests(folder)


def check_finished_run(output):
    metrics = json.loads((output / "test_metrics.json").read_text())
    for key in ("WA", "UA", "macro_F1", "align_audio_text", "unif_audio"):
        assert key in metrics
    confusion = read_csv_rows(output / "test_confusion.csv")
    assert sorted(row[0] for row in confusion[1:]) == sorted(CLASSES)
    total = sum(int(c) for row in confusion[1:] for c in row[1:])
    assert total == COUNTS["test"] * len(CLASSES)
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def read_csv_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def small_run(data, tmp_path_factory):
    """small.yaml's tiny run, uninterrupted."""
    folder, manifests = data
    output = tmp_path_factory.mktemp("small") / "run"
    result = run_recipe(
        "hparams/small.yaml", folder, output, manifests, *TINY_SMALL
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return output


def test_small_encoders_train_and_test_from_csv(small_run, tmp_path):
    output = small_run
    check_finished_run(output)
    # The classifier was sized from the training manifest's three labels.
    (checkpoint,) = (output / "save").glob("CKPT*")
    classifier = torch.load(checkpoint / "classifier.ckpt", weights_only=True)
    assert classifier["w.weight"].shape[0] == len(CLASSES)
    encoded = (output / "save" / "label_encoder.txt").read_text()
    for label in CLASSES:
        assert f"'{label}' =>" in encoded

    # Exported, the classifier keeps its size without the manifest and
    # gives the recipe's test labels.
    from speechbrain_turbo.export import export_model
    from speechbrain_turbo.inference import TurboClassifier

    model = tmp_path / "model"
    export_model(str(output), str(model))
    assert "train_csv" not in (model / "hyperparams.yaml").read_text()
    classifier = TurboClassifier.from_hparams(str(model))
    assert sorted(classifier.labels) == sorted(CLASSES)
    recipe = {
        row["ID"]: row["predicted"]
        for row in read_csv(output / "test_predictions.csv")
    }
    test = json.loads((output / "test_screened.json").read_text())
    assert len(test) == len(recipe) == COUNTS["test"] * len(CLASSES)
    for item_id, entry in test.items():
        labels = classifier.classify_file(entry["wav"], text=entry["text"])[3]
        assert labels[0] == recipe[item_id], item_id


def test_duration_sized_batches_under_torchrun_score_each_utterance_once(
    data, tmp_path
):
    folder, manifests = data
    output = tmp_path / "ddp"
    result = run_under_torchrun(
        RECIPE,
        "hparams/small.yaml",
        f"--data_folder={folder}",
        f"--train_csv={manifests['train']}",
        f"--valid_csv={manifests['valid']}",
        f"--test_csv={manifests['test']}",
        f"--output_folder={output}",
        *TINY_SMALL,
        # Duration-sized batches (a few 0.5-0.8 s utterances each).
        "--dynamic_batching=True",
        "--max_batch_length=4",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    check_finished_run(output)
    metrics = json.loads((output / "test_metrics.json").read_text())
    shards = metrics["scored_per_process"]
    assert shards == [COUNTS["test"] * len(CLASSES) // 2] * 2
    scored = [row["ID"] for row in read_csv(output / "test_predictions.csv")]
    assert sorted(scored) == sorted(
        row["ID"] for row in read_csv(manifests["test"])
    )


@pytest.mark.parametrize("hparams_file", ["pretrained", "whisper"])
def test_pretrained_encoders_train_and_test_from_csv(
    data, tmp_path, hparams_file
):
    folder, manifests = data
    texts = [s for _, sentences in CLASSES.values() for s in sentences]
    if hparams_file == "whisper":
        audio = save_random_whisper_model(str(tmp_path / "whisper"))
        # Of its two layers: the cut is exercised.
        extra = ["--audio_num_layers=1"]
    else:
        audio = save_random_speech_model(str(tmp_path / "w2v"), "wav2vec2")
        extra = []
    text = save_random_text_model(str(tmp_path / "bert"), texts, "bert")
    output = tmp_path / "pretrained"
    result = run_recipe(
        f"hparams/{hparams_file}.yaml",
        folder,
        output,
        manifests,
        f"--audio_hub={audio}",
        f"--text_hub={text}",
        f"--pretrained_folder={tmp_path / 'cache'}",
        *TINY_PRETRAINED,
        *extra,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Turbo views of modality" not in log  # the views differ
    check_finished_run(output)


@pytest.mark.parametrize(
    "split, corrupt, expected",
    [
        (
            "valid",
            lambda rows: write_columns(rows, ["ID", "wav", "label"]),
            "missing column(s) text",
        ),
        (
            "train",
            lambda rows: rows[3].update(wav="$data_root/wavs/gone.wav"),
            "line 5 (ID 'train_calm_3'), column wav: no file",
        ),
        (
            "test",
            lambda rows: rows[1].update(label="fear"),
            "line 3 (ID 'test_calm_1'), column label: label 'fear' is not "
            "among the training labels ['calm', 'glad', 'tense']",
        ),
    ],
)
def test_bad_manifest_stops_the_recipe_naming_row_and_column(
    data, tmp_path, split, corrupt, expected
):
    folder, manifests = data
    rows = read_csv(manifests[split])
    bad = dict(manifests)
    bad[split] = tmp_path / f"bad_{split}.csv"
    columns = corrupt(rows)
    write_csv(bad[split], rows, columns)
    result = run_recipe(
        "hparams/small.yaml", folder, tmp_path / "run", bad, *TINY_SMALL
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"bad_{split}.csv" in output
    assert expected in output


def write_columns(rows, columns):
    """The columns to write (the corruption drops one)."""
    return columns


def test_a_label_lost_to_screening_is_named(data, tmp_path):
    folder, manifests = data
    rows = read_csv(manifests["train"])
    for row in rows:
        if row["label"] == "glad":
            row["wav"] = "$data_root/wavs/gone.wav"
    bad = dict(manifests, train=tmp_path / "train.csv")
    write_csv(bad["train"], rows)
    result = run_recipe(
        "hparams/small.yaml",
        folder,
        tmp_path / "run",
        bad,
        *TINY_SMALL,
        "--on_bad_input=skip",
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "out_n_neurons is 3" in output
    assert "every training example of ['glad'] was left out" in output


def test_a_run_stopped_in_epoch_2_resumes_as_if_never_stopped(
    data, small_run, tmp_path
):
    """With waveform augmentation (SpeechBrain's Augmenter draws from
    Python's random generator), from the end-of-epoch-1 checkpoint, after
    SIGTERM (SIGINT ends the process the same way)."""
    folder, manifests = data
    overrides, reference = TINY_SMALL, small_run
    output = tmp_path / "stopped"
    command = [
        sys.executable,
        "train.py",
        "hparams/small.yaml",
        f"--data_folder={folder}",
        *(f"--{s}_csv={manifests[s]}" for s in ("train", "valid", "test")),
        f"--output_folder={output}",
        *overrides,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(
        command,
        cwd=RECIPE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = output / "history.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        # Epoch 1 is over and its checkpoint saved: epoch 2 has begun.
        log = output / "log.txt"
        if log.exists() and "Going into epoch 2" in log.read_text():
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    assert history.read_text().count("\n") == 1  # stopped in epoch 2
    assert not (output / "test_metrics.json").exists()

    result = run_recipe(
        "hparams/small.yaml", folder, output, manifests, *overrides
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    resumed = [json.loads(line) for line in history.read_text().splitlines()]
    expected = [
        json.loads(line)
        for line in (reference / "history.jsonl").read_text().splitlines()
    ]
    for got, want in zip(resumed, expected):
        got["train"].pop("time_s"), want["train"].pop("time_s")
        assert got == want
    metrics = [
        json.loads((run / "test_metrics.json").read_text())
        for run in (output, reference)
    ]
    for report in metrics:
        for timing in (
            "process_cpu_minutes",
            "test_seconds",
            "scoring_seconds",
        ):
            report.pop(timing)
    assert metrics[0] == metrics[1]
