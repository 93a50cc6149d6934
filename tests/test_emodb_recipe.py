"""EmoDB (recipes/EmoDB/turbo): its preparation on a generated tree in
EmoDB's layout, and the generic recipe trained on the folds it writes, with
the default settings, on a corpus of 10 distinct sentences.
"""

import csv
import json
import math
import os
import sys

import pytest
import torch
from conftest import REPO, run_bash, run_python
from speechbrain.dataio import audio_io

from speechbrain_turbo.cross_validate import fold_overrides

PREPARATION = os.path.join(REPO, "recipes", "EmoDB", "turbo")
GENERIC = os.path.join(REPO, "recipes", "AudioText", "turbo")
sys.path.insert(0, PREPARATION)
from emodb_prepare import EMOTIONS, FOLDS, SENTENCES, prepare_emodb  # noqa: E402

SPEAKERS = sorted(s for pair in FOLDS.values() for s in pair)
TEXT_CODES = sorted(SENTENCES)
EMOTION_LETTERS = sorted(EMOTIONS)


def make_tree(folder):
    """One 0.4 s file per speaker and emotion (70), 22.05 kHz as the public
    copy; each speaker reads 7 of the 10 sentences, all 10 in training."""
    wav_folder = folder / "wav"
    wav_folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    names = []
    for s, speaker in enumerate(SPEAKERS):
        for e, letter in enumerate(EMOTION_LETTERS):
            text = TEXT_CODES[(s + e) % len(TEXT_CODES)]
            name = f"{speaker}{text}{letter}a.wav"
            t = torch.arange(int(22050 * 0.4)) / 22050
            wav = 0.3 * torch.sin(2 * math.pi * (150 + 40 * e) * t)
            wav += 0.02 * torch.randn(len(t), generator=generator)
            audio_io.save(str(wav_folder / name), wav[None], 22050)
            names.append(name)
    # Not utterances: counted and reported, not read.
    (wav_folder / "notes.txt").write_text("not audio")
    audio_io.save(str(wav_folder / "take2.wav"), torch.zeros(1, 100), 22050)
    return names


@pytest.fixture(scope="module")
def emodb_tree(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emodb") / "EmoDB"
    make_tree(folder)
    return folder


@pytest.fixture(scope="module")
def emodb_folds(emodb_tree, tmp_path_factory):
    """The five folds, written by the preparation's command line."""
    folds = tmp_path_factory.mktemp("emodb_folds")
    result = run_python(
        PREPARATION, "emodb_prepare.py", str(emodb_tree), str(folds)
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return folds


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_prepare_writes_speaker_independent_manifests(emodb_tree, tmp_path):
    summary = prepare_emodb(str(emodb_tree), str(tmp_path), test_fold=2)
    assert summary["speakers"] == {
        "test": ["09", "10"],
        "valid": ["11", "13"],
        "train": ["03", "08", "12", "14", "15", "16"],
    }
    assert summary["ignored"] == ["notes.txt", "take2.wav"]
    rows = {
        split: read_rows(tmp_path / f"{split}.csv")
        for split in summary["speakers"]
    }
    assert list(rows["train"][0]) == [
        "ID",
        "wav",
        "text",
        "label",
        "speaker",
        "duration",
    ]
    for split, split_rows in rows.items():
        assert len(split_rows) == 7 * len(summary["speakers"][split])
        assert {r["speaker"] for r in split_rows} == set(
            summary["speakers"][split]
        )
        assert sorted(r["label"] for r in split_rows) == sorted(
            list(EMOTIONS.values()) * len(summary["speakers"][split])
        )
        for r in split_rows:
            assert r["wav"] == f"$data_root/wav/{r['ID']}.wav"
            assert r["text"] == SENTENCES[r["ID"][2:5]]
            assert float(r["duration"]) == pytest.approx(0.4, abs=1e-3)
    assert len({r["text"] for r in rows["train"]}) == 10


def test_prepare_reuses_or_redoes_when_the_options_change(emodb_tree, tmp_path):
    first = prepare_emodb(str(emodb_tree), str(tmp_path), test_fold=5)
    assert not first["reused"]
    assert first["speakers"]["valid"] == ["03", "08"]
    assert prepare_emodb(str(emodb_tree), str(tmp_path), test_fold=5)["reused"]
    changed = prepare_emodb(
        str(emodb_tree), str(tmp_path), test_fold=5, valid_fold=3
    )
    assert not changed["reused"]
    valid = read_rows(tmp_path / "valid.csv")
    assert {r["speaker"] for r in valid} == {"11", "13"}
    # A deleted manifest is written again.
    os.remove(tmp_path / "test.csv")
    assert not prepare_emodb(
        str(emodb_tree), str(tmp_path), test_fold=5, valid_fold=3
    )["reused"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("03x01Wa.wav", None),
        ("03a03Wa.wav", "unknown text code"),
        ("04a01Wa.wav", "unknown speaker"),
        ("03a01Xa.wav", "unknown emotion letter"),
    ],
)
def test_prepare_names_the_file_it_cannot_place(tmp_path, name, message):
    (tmp_path / "wav").mkdir()
    audio_io.save(str(tmp_path / "wav" / name), torch.zeros(1, 100), 16000)
    audio_io.save(
        str(tmp_path / "wav" / "03a01Wa.wav"), torch.zeros(1, 100), 16000
    )
    if message is None:
        summary = prepare_emodb(
            str(tmp_path), str(tmp_path / "out"), test_fold=1
        )
        assert summary["ignored"] == [name]
        return
    with pytest.raises(ValueError, match=message) as err:
        prepare_emodb(str(tmp_path), str(tmp_path / "out"))
    assert name in str(err.value)


def test_prepare_refuses_a_folder_without_wav(tmp_path):
    with pytest.raises(FileNotFoundError, match="holding wav/"):
        prepare_emodb(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="valid_fold"):
        prepare_emodb(
            str(tmp_path), str(tmp_path / "out"), test_fold=2, valid_fold=2
        )


def test_the_command_line_writes_every_fold(emodb_folds):
    for fold, pair in FOLDS.items():
        test = read_rows(emodb_folds / f"fold{fold}" / "test.csv")
        assert sorted({r["speaker"] for r in test}) == sorted(pair)
        valid = read_rows(emodb_folds / f"fold{fold}" / "valid.csv")
        next_pair = FOLDS[fold % len(FOLDS) + 1]
        assert sorted({r["speaker"] for r in valid}) == sorted(next_pair)


@pytest.mark.slow
def test_recipe_trains_on_ten_sentences_with_the_default_vocabulary(
    emodb_tree, emodb_folds, tmp_path
):
    output = tmp_path / "run"
    result = run_python(
        GENERIC,
        "train.py",
        "hparams/small.yaml",
        *fold_overrides(4, manifests=str(emodb_folds)),
        f"--data_folder={emodb_tree}",
        f"--output_folder={output}",
        # Tiny model and one epoch; the tokenizer keeps its default.
        "--number_of_epochs=1",
        "--batch_size=8",
        "--n_mels=20",
        "--channels=16",
        "--audio_embedding_dim=16",
        "--text_channels=16",
        "--token_embedding_dim=8",
        "--projection_dim=8",
        "--fusion_dim=16",
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "vocab_size 300 is more than the training transcripts allow" in log
    (model,) = (output / "save" / "tokenizer").glob("*_unigram.model")
    assert int(model.name.split("_")[0]) < 300
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert 0.0 <= metrics["UA"] <= 1.0
    assert len(read_rows(output / "test_predictions.csv")) == 14
    assert (output / "test_metrics_without_text.json").exists()


@pytest.mark.slow
def test_pretrained_whisper_recipe_trains_exports_and_classifies(
    emodb_tree, tmp_path
):
    """hparams/whisper.yaml with EmoDB's values (experiments/common.sh) and
    a tiny random Whisper and BERT given as folders: Turbo trains (two
    different views), the model exports with the encoders' files, and
    classifies as the recipe's test did."""
    from speechbrain_turbo.export import export_model
    from speechbrain_turbo.inference import TurboClassifier
    from speechbrain_turbo.random_hf_models import (
        save_random_text_model,
        save_random_whisper_model,
    )

    whisper = save_random_whisper_model(str(tmp_path / "whisper"))
    bert = save_random_text_model(
        str(tmp_path / "bert"), list(SENTENCES.values()), "bert"
    )
    overrides = [
        f"--audio_hub={whisper}",
        f"--text_hub={bert}",
        f"--pretrained_folder={tmp_path / 'pretrained'}",
        "--audio_num_layers=1",
        "--number_of_epochs=1",
        "--batch_size=8",
        "--fusion_dim=16",
        "--projection_dim=8",
    ]
    # As the experiments run it: the folds, then EmoDB's values.
    result = run_bash(
        PREPARATION,
        f"data={emodb_tree} && source experiments/common.sh && "
        "cross_validate whisper.yaml --name run --folds 4 --seeds 1 "
        f"--output_root {tmp_path} -- {' '.join(overrides)}",
        FOLDS_FOLDER=str(tmp_path / "folds"),
    )
    output = tmp_path / "run" / "fold4_seed1"
    assert result.returncode == 0, result.stderr[-4000:]
    log = (output / "stdout.txt").read_text()
    assert "Turbo views of modality" not in log  # the views differ
    hparams = (output / "hyperparams.yaml").read_text()
    assert "dynamic_batching: false" in hparams.lower()  # EmoDB's value
    history = [
        json.loads(line)
        for line in (output / "history.jsonl").read_text().splitlines()
    ]
    assert history[0]["train"]["in_modal"] > 0
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert 0.0 <= metrics["UA"] <= 1.0

    model = tmp_path / "model"
    export_model(str(output), str(model))
    hparams = (model / "hyperparams.yaml").read_text()
    assert "HFWhisperEncoder" in hparams and whisper not in hparams
    assert (model / "audio_model" / "preprocessor_config.json").exists()
    classifier = TurboClassifier.from_hparams(str(model))
    recipe = {
        row["ID"]: row["predicted"]
        for row in read_rows(output / "test_predictions.csv")
    }
    test = json.loads((output / "test_screened.json").read_text())
    for item_id, entry in test.items():
        labels = classifier.classify_file(entry["wav"], text=entry["text"])[3]
        assert labels[0] == recipe[item_id], item_id


def test_the_command_line_names_a_folder_without_wav_in_one_line(tmp_path):
    result = run_python(
        PREPARATION, "emodb_prepare.py", str(tmp_path), str(tmp_path / "out")
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"emodb_prepare.py: {tmp_path / 'wav'} does not exist: data_folder "
        "must be the EmoDB folder holding wav/ (files named like 03a01Fa.wav)"
    )
