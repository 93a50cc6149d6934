"""The MUStARD recipe (recipes/MUStARD/turbo): its preparation on a
generated tree in the layout of the two public repositories, and a training
run of each hparams file at its smallest.
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

PREPARATION = os.path.join(REPO, "recipes", "MUStARD", "turbo")
GENERIC = os.path.join(REPO, "recipes", "AudioText", "turbo")
sys.path.insert(0, PREPARATION)
import mustard_prepare  # noqa: E402
from mustard_prepare import (  # noqa: E402
    SHOW_FOLDS,
    prepare_mustard,
)

SPEAKERS = {
    "FRIENDS": ["CHANDLER", "ROSS", "MONICA", "PHOEBE"],
    "BBT": ["SHELDON", "LEONARD", "PENNY"],
    "GOLDENGIRLS": ["DOROTHY"],
}
LINES = [
    "Oh great, another meeting.",
    "I love waiting in line.",
    "That is a nice hat.",
    "We are out of milk.",
    "Could you be any louder?",
    "Thanks for the help.",
]


def make_tree(root, items=40):
    """``MUStARD/data/sarcasm_data.json`` with ``items + 5`` entries (5
    without audio) and ``cmpt-419/audio_data/<key>.wav`` (44.1 kHz stereo,
    0.3 s) for ``items`` of them, plus one wav that has no entry."""
    entries = {}
    generator = torch.Generator().manual_seed(0)
    audio_folder = root / "cmpt-419" / "audio_data"
    audio_folder.mkdir(parents=True)
    speakers = [(show, s) for show, names in SPEAKERS.items() for s in names]
    for i in range(items + 5):
        show, speaker = speakers[i % len(speakers)]
        key = f"{1 + i % 2}_{100 + i}"
        entries[key] = {
            "utterance": LINES[i % len(LINES)],
            "speaker": speaker,
            "context": [f"line {i} a", f"line {i} b"],
            "context_speakers": ["X", "Y"],
            "show": show,
            "sarcasm": i % 2 == 0,
        }
        if i < items:
            t = torch.arange(int(44100 * 0.3)) / 44100
            wave = 0.3 * torch.sin(2 * math.pi * (120 + 60 * (i % 2)) * t)
            stereo = torch.stack([wave, wave]) + 0.01 * torch.randn(
                2, len(t), generator=generator
            )
            audio_io.save(str(audio_folder / f"{key}.wav"), stereo, 44100)
    audio_io.save(str(audio_folder / "9_999.wav"), torch.zeros(2, 441), 44100)
    json_file = root / "MUStARD" / "data" / "sarcasm_data.json"
    json_file.parent.mkdir(parents=True)
    json_file.write_text(json.dumps(entries))
    return entries


@pytest.fixture(scope="module")
def mustard_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mustard")
    entries = make_tree(root)
    return root, entries


def prepare(root, save_folder, **options):
    return prepare_mustard(
        str(root / "MUStARD" / "data" / "sarcasm_data.json"),
        str(root / "cmpt-419" / "audio_data"),
        str(save_folder),
        str(root / "converted"),
        **options,
    )


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def all_rows(folder):
    return {
        split: read_rows(folder / f"{split}.csv")
        for split in ("train", "valid", "test")
    }


def test_prepare_converts_audio_and_writes_stratified_folds(
    mustard_tree, tmp_path
):
    root, entries = mustard_tree
    summary = prepare(root, tmp_path, test_fold=2)
    assert summary["without_audio"] == 5
    assert summary["ignored"] == ["9_999.wav"]
    rows = all_rows(tmp_path)
    assert list(rows["train"][0]) == [
        "ID",
        "wav",
        "text",
        "label",
        "speaker",
        "show",
        "duration",
    ]
    ids = [r["ID"] for split in rows.values() for r in split]
    assert len(ids) == len(set(ids)) == 40
    assert [len(rows[s]) for s in ("train", "valid", "test")] == [24, 8, 8]
    for split in rows.values():
        labels = [r["label"] for r in split]
        assert labels.count("sarcastic") == labels.count("not_sarcastic")
    row = rows["test"][0]
    item = entries[row["ID"]]
    assert row["text"] == item["utterance"]
    assert row["speaker"] == item["speaker"] and row["show"] == item["show"]
    assert row["label"] == ("sarcastic" if item["sarcasm"] else "not_sarcastic")
    info = audio_io.info(row["wav"])
    assert (info.sample_rate, info.num_channels) == (16000, 1)
    assert float(row["duration"]) == pytest.approx(0.3, abs=0.01)
    # Every fold is the test set once: the five test sets partition the data.
    tests = []
    for fold in range(1, 6):
        prepare(root, tmp_path / f"f{fold}", test_fold=fold)
        tests += [r["ID"] for r in read_rows(tmp_path / f"f{fold}/test.csv")]
    assert sorted(tests) == sorted(ids)


def test_speaker_and_show_splits_keep_them_out(mustard_tree, tmp_path):
    root, _ = mustard_tree
    tested = []
    for fold in range(1, 6):
        folder = tmp_path / f"speaker{fold}"
        summary = prepare(root, folder, split="speaker", test_fold=fold)
        speakers = summary["speakers"]
        assert not set(speakers["test"]) & set(speakers["train"])
        assert not set(speakers["test"]) & set(speakers["valid"])
        assert not set(speakers["valid"]) & set(speakers["train"])
        tested += speakers["test"]
    assert sorted(tested) == sorted(s for v in SPEAKERS.values() for s in v)
    summary = prepare(root, tmp_path / "show", split="show", test_fold=2)
    assert summary["shows"]["test"] == ["BBT"]
    assert "BBT" not in summary["shows"]["train"] + summary["shows"]["valid"]
    assert sum(summary["counts"]["valid"].values()) > 0


def test_context_lines_go_before_the_utterance(mustard_tree, tmp_path):
    root, entries = mustard_tree
    prepare(root, tmp_path, context_lines=1)
    row = read_rows(tmp_path / "train.csv")[0]
    item = entries[row["ID"]]
    assert row["text"] == f"{item['context'][-1]} {item['utterance']}"


def test_prepare_reuses_or_redoes_when_the_options_change(
    mustard_tree, tmp_path
):
    root, _ = mustard_tree
    assert prepare(root, tmp_path)["reused"] is False
    assert prepare(root, tmp_path)["reused"] is True
    assert prepare(root, tmp_path, context_lines=2)["reused"] is False


@pytest.mark.parametrize(
    "options, message",
    [
        ({"split": "random"}, "split must be one of"),
        ({"test_fold": 6}, "test_fold must be one of"),
        ({"split": "show", "test_fold": 3}, "held-out show"),
        ({"split": "show", "valid_fold": 1}, "leave valid_fold unset"),
        ({"test_fold": 2, "valid_fold": 2}, "other than test_fold 2"),
    ],
)
def test_bad_options_are_named(mustard_tree, tmp_path, options, message):
    root, _ = mustard_tree
    with pytest.raises(ValueError, match=message):
        prepare(root, tmp_path, **options)


def test_missing_repositories_say_what_to_clone(tmp_path):
    with pytest.raises(FileNotFoundError, match="soujanyaporia/MUStARD"):
        prepare(tmp_path, tmp_path / "out")
    json_file = tmp_path / "MUStARD" / "data" / "sarcasm_data.json"
    json_file.parent.mkdir(parents=True)
    json_file.write_text("{}")
    with pytest.raises(FileNotFoundError, match="katiesun138/cmpt-419"):
        prepare(tmp_path, tmp_path / "out")


def test_a_label_that_is_not_a_boolean_is_named(mustard_tree, tmp_path):
    root, entries = mustard_tree
    bad = tmp_path / "MUStARD" / "data" / "sarcasm_data.json"
    bad.parent.mkdir(parents=True)
    key = next(iter(entries))
    bad.write_text(json.dumps({key: {**entries[key], "sarcasm": "yes"}}))
    with pytest.raises(ValueError, match=f"key {key}: field 'sarcasm'"):
        prepare_mustard(
            str(bad),
            str(root / "cmpt-419" / "audio_data"),
            str(tmp_path / "out"),
            str(tmp_path / "converted"),
        )


def test_the_command_line_writes_every_fold(mustard_tree, tmp_path):
    root, _ = mustard_tree
    folds = tmp_path / "folds"
    result = run_python(
        PREPARATION, "mustard_prepare.py", str(root), str(folds), "--split=show"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in folds.iterdir()) == [
        "audio_16k",
        "fold1",
        "fold2",
    ]
    for fold, show in SHOW_FOLDS.items():
        test = read_rows(folds / f"fold{fold}" / "test.csv")
        assert {r["show"] for r in test} == {show}
        assert all(r["wav"].startswith(str(folds / "audio_16k")) for r in test)


@pytest.mark.slow
def test_pretrained_recipe_trains_with_the_paper_objective(
    mustard_tree, tmp_path
):
    """hparams/whisper.yaml with MUStARD's values (experiments/common.sh),
    a tiny random Whisper and BERT, and the paper's overrides from its
    header: both Turbo families train."""
    from test_paper_preset import paper_overrides

    from speechbrain_turbo.random_hf_models import (
        save_random_text_model,
        save_random_whisper_model,
    )

    root, _ = mustard_tree
    whisper = save_random_whisper_model(str(tmp_path / "whisper"))
    bert = save_random_text_model(str(tmp_path / "bert"), LINES, "bert")
    hparams_file = os.path.join(GENERIC, "hparams", "whisper.yaml")
    with open(hparams_file, encoding="utf-8") as f:
        paper = paper_overrides(f.read())
    overrides = [
        f"--audio_hub={whisper}",
        f"--text_hub={bert}",
        f"--pretrained_folder={tmp_path / 'pretrained'}",
        "--audio_num_layers=1",
        "--number_of_epochs=1",  # replaces MUStARD's 6
        "--fusion_dim=16",
        "--projection_dim=8",
        *(f"--{key}={value}" for key, value in paper.items()),
    ]
    # As the experiments run it: the folds, then MUStARD's values.
    result = run_bash(
        PREPARATION,
        f"data={root} && source experiments/common.sh && "
        "cross_validate whisper.yaml --name run --folds 1 --seeds 1 "
        f"--output_root {tmp_path} -- {' '.join(overrides)}",
        FOLDS_FOLDER=str(tmp_path / "folds"),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "--number_of_epochs=1 replaces --number_of_epochs=6" in result.stderr
    output = tmp_path / "run" / "fold1_seed1"
    hparams = (output / "hyperparams.yaml").read_text()
    assert "max_batch_length: 64" in hparams  # MUStARD's value
    (epoch,) = [
        json.loads(line)
        for line in (output / "history.jsonl").read_text().splitlines()
    ]
    assert epoch["train"]["in_modal"] > 0 and epoch["train"]["cross_modal"] > 0
    metrics = json.loads((output / "test_metrics.json").read_text())
    assert 0.0 <= metrics["macro_F1"] <= 1.0


def write_plus_plus(root, entries, skip=()):
    """MUStARD++'s text file: a context line and the utterance (``K_u``,
    valence 1-9 in turn) of every entry but ``skip``."""
    path = root / "mustard++.csv"
    lines = ["SCENE,KEY,SENTENCE,Sarcasm,Valence,Arousal"]
    for i, key in enumerate(sorted(entries)):
        lines.append(f'{key},{key}_c_00,"a line, before",,,')
        if key not in skip:
            lines.append(f'{key},{key}_u,"the utterance",1,{1 + i % 9},5')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_valence_task_labels_the_clips_from_mustard_plus_plus(
    mustard_tree, tmp_path
):
    root, entries = mustard_tree
    plus_plus = write_plus_plus(tmp_path, entries)
    summary = prepare(
        root, tmp_path / "prep", task="valence", plus_plus_csv=str(plus_plus)
    )
    rows = all_rows(tmp_path / "prep")
    labels = {r["ID"]: r["label"] for split in rows.values() for r in split}
    expected = {
        key: mustard_prepare.VALENCE_CLASSES[1 + i % 9]
        for i, key in enumerate(sorted(entries))
        if key in labels
    }
    assert labels == expected and len(labels) == 40
    assert set(summary["counts"]["train"]) == {"low", "middle", "high"}
    # The sarcasm task's manifests in the same folder are prepared again.
    assert not prepare(root, tmp_path / "prep")["reused"]


def test_valence_task_names_the_clip_without_a_rating(mustard_tree, tmp_path):
    root, entries = mustard_tree
    audio = root / "cmpt-419" / "audio_data"
    with_audio = sorted(
        p.stem for p in audio.glob("*.wav") if p.stem in entries
    )
    plus_plus = write_plus_plus(tmp_path, entries, skip={with_audio[3]})
    with pytest.raises(ValueError, match=f"no row {with_audio[3]}_u"):
        prepare(
            root,
            tmp_path / "prep",
            task="valence",
            plus_plus_csv=str(plus_plus),
        )
    with pytest.raises(FileNotFoundError, match="MUStARD_Plus_Plus"):
        prepare(
            root,
            tmp_path / "prep",
            task="valence",
            plus_plus_csv=str(tmp_path / "absent.csv"),
        )
