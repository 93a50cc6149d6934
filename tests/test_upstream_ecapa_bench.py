"""bench/upstream_ecapa.py without SpeechBrain's recipe: the manifests it
hands the recipe and how it scores the recipe's predictions."""

import csv
import json
import os
import sys

import pytest
import torch
from conftest import REPO
from speechbrain.dataio import audio_io

sys.path.insert(0, os.path.join(REPO, "bench"))
import upstream_ecapa  # noqa: E402


def test_manifests_hold_16k_copies_lengths_and_labels(tmp_path):
    (tmp_path / "audio").mkdir()
    for split in ("train", "valid", "test"):
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ID", "wav", "text", "label"])
            for i, label in enumerate(["anger", "sadness"]):
                name = f"{split}{i}"
                audio_io.save(
                    str(tmp_path / "audio" / f"{name}.wav"),
                    torch.zeros(2, 22050),
                    22050,
                )
                writer.writerow([name, f"$data_root/{name}.wav", "Hi.", label])
    paths = upstream_ecapa.write_upstream_manifests(
        str(tmp_path), str(tmp_path / "audio"), str(tmp_path / "out"), 16000
    )
    train = json.loads(open(paths["train"]).read())
    assert sorted(train) == ["train0", "train1"]
    assert train["train1"]["emo"] == "sadness"
    assert train["train1"]["length"] == pytest.approx(1.0)
    info = audio_io.info(train["train0"]["wav"])
    assert (info.sample_rate, info.channels) == (16000, 1)


def test_predictions_are_scored_as_wa_and_ua(tmp_path):
    (tmp_path / "save").mkdir()
    (tmp_path / "save" / "label_encoder.txt").write_text(
        "'anger' => 0\n'sadness' => 1\n================\n"
        "'starting_index' => 0\n"
    )
    with open(tmp_path / "predictions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prediction", "true_value"])
        writer.writerows([["a", 0, 0], ["b", 0, 0], ["c", 0, 0], ["d", 1, 1]])
        writer.writerow(["e", 0, 1])
    scores = upstream_ecapa.score_predictions(str(tmp_path))
    assert scores["WA"] == pytest.approx(0.8)
    assert scores["UA"] == pytest.approx(0.75)
    assert scores["test_utterances"] == 5
    assert scores["classes"] == 2
