"""The IEMOCAP recipe with pretrained encoders (hparams/turbo.yaml), run end
to end on a tiny corpus with tiny random HF models: no network.
"""

import csv
import json
import os
import shutil

import pytest
import torch
from conftest import REPO, run_python
from safetensors.torch import load_file

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow

RECIPE = os.path.join(REPO, "recipes", "IEMOCAP", "turbo")
TINY_HEADS = [
    "--number_of_epochs=2",
    "--batch_size=8",
    "--num_workers=0",
    "--fusion_dim=16",
    "--projection_dim=8",
]


def run_turbo_yaml(tmp_path, corpus, models, name, *overrides):
    output = tmp_path / name
    result = run_python(
        RECIPE,
        "train.py",
        "hparams/turbo.yaml",
        f"--data_folder={corpus}",
        f"--audio_hub={models[0]}",
        f"--text_hub={models[1]}",
        f"--pretrained_folder={tmp_path / 'pretrained'}",
        f"--output_folder={output}",
        *TINY_HEADS,
        *overrides,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return output, log


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_corpus, tiny_hf_models):
    tmp_path = tmp_path_factory.mktemp("pretrained")
    # Turbo with gradient checkpointing of both encoders.
    turbo = run_turbo_yaml(
        tmp_path,
        tiny_corpus,
        tiny_hf_models,
        "turbo",
        "--gradient_checkpointing=True",
    )
    baseline = run_turbo_yaml(
        tmp_path,
        tiny_corpus,
        tiny_hf_models,
        "baseline",
        "--turbo_weight=0",
        "--twin_pass=False",
        "--precision=bf16",
    )
    return turbo, baseline


def best_checkpoint(output):
    save = output / "save"
    (folder,) = [p for p in save.iterdir() if p.name.startswith("CKPT")]
    return folder


def test_turbo_yaml_trains_and_tests_with_two_optimizers(runs):
    output, log = runs[0]
    metrics = json.loads((output / "test_metrics.json").read_text())
    for key in ("WA", "UA", "macro_F1", "align_audio_text", "unif_text"):
        assert key in metrics
    # The tested checkpoint is the epoch of best validation UA.
    history = [
        json.loads(line)
        for line in (output / "history.jsonl").read_text().splitlines()
    ]
    best_ua = max(epoch["valid"]["UA"] for epoch in history)
    (tested,) = [e for e in history if e["epoch"] == metrics["epoch"]]
    assert tested["valid"]["UA"] == best_ua
    assert metrics["selected_on_valid"]["UA"] == best_ua
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    epochs = [
        line
        for line in (output / "train_log.txt").read_text().splitlines()
        if line.startswith("epoch")
    ]
    assert len(epochs) == 2
    assert "lr: 5.00e-04, encoder_lr: 2.00e-05" in epochs[0]
    assert "in_modal" in epochs[0] and "cross_modal" in epochs[0]
    # The encoders' own dropout makes the two views differ.
    assert "are identical" not in log
    checkpoint = best_checkpoint(output)
    assert (checkpoint / "encoder_optimizer.ckpt").exists()
    assert (checkpoint / "optimizer.ckpt").exists()


def test_pretrained_encoders_are_fine_tuned_but_cnn_stays_frozen(
    runs, tiny_hf_models
):
    output, _ = runs[0]
    source = load_file(os.path.join(tiny_hf_models[0], "model.safetensors"))
    tuned = torch.load(
        best_checkpoint(output) / "audio_encoder.ckpt", weights_only=True
    )
    prefix = "encoder.model."
    cnn = [k for k in source if k.startswith("feature_extractor.")]
    transformer = [k for k in source if k.startswith("encoder.layers.")]
    assert cnn and transformer
    for key in cnn:
        assert torch.equal(tuned[prefix + key], source[key]), key
    assert any(
        not torch.equal(tuned[prefix + key], source[key]) for key in transformer
    )


def test_baseline_on_turbo_yaml_runs_in_bf16_without_contrastive_term(runs):
    output, log = runs[1]
    assert "Using training precision: `--precision=bf16`" in log
    train_log = (output / "train_log.txt").read_text()
    assert "train CE" in train_log and "in_modal" not in train_log
    # WA is the accuracy of the written predictions.
    metrics = json.loads((output / "test_metrics.json").read_text())
    with open(output / "test_predictions.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    correct = sum(row["label"] == row["predicted"] for row in rows)
    assert metrics["WA"] == pytest.approx(correct / len(rows))


def test_exported_pretrained_model_gives_the_recipe_test_labels(
    runs, tiny_hf_models, tmp_path
):
    import csv

    from speechbrain_turbo.export import export_model
    from speechbrain_turbo.inference import TurboClassifier

    output, _ = runs[0]
    model = tmp_path / "model"
    export_model(str(output), str(model))
    # The encoders' files travel with the model: no hub, no original folder.
    hparams = (model / "hyperparams.yaml").read_text()
    assert tiny_hf_models[0] not in hparams and tiny_hf_models[1] not in hparams
    assert (model / "audio_model" / "config.json").exists()
    assert (model / "text_model" / "tokenizer_config.json").exists()

    classifier = TurboClassifier.from_hparams(str(model))
    with open(output / "test_predictions.csv", encoding="utf-8") as f:
        recipe = {row["ID"]: row["predicted"] for row in csv.DictReader(f)}
    test = json.loads((output / "test_screened.json").read_text())
    for item_id, entry in test.items():
        labels = classifier.classify_file(entry["wav"], text=entry["text"])[3]
        assert labels[0] == recipe[item_id], item_id


def fake_hub_cache(cache, repo, folder):
    """``folder`` as the cached snapshot of hub model ``repo``, the one
    ``refs/main`` names."""
    base = cache / ("models--" + repo.replace("/", "--"))
    revision = "0" * 40
    shutil.copytree(folder, base / "snapshots" / revision)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(revision)


def add_stale_snapshot(cache, repo):
    """Another revision of ``repo`` in the cache, sorting after the one
    ``refs/main`` names (e.g. left by an older download)."""
    stale = cache / ("models--" + repo.replace("/", "--")) / "snapshots"
    stale = stale / ("f" * 40)
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")


def test_model_trained_with_hub_names_exports_and_classifies_offline(
    tmp_path, tiny_corpus, tiny_hf_models, monkeypatch
):
    hub_names = ("tiny-org/speech", "tiny-org/text")
    work = tmp_path / "recipe_folder"
    hf_home = tmp_path / "hf_home"
    # As a user's machine after the first, downloading run: the weights
    # under the hparams' save_path, relative to the folder the training
    # ran in; the tokenizer / feature extractor in the global cache.
    for name, folder in zip(hub_names, tiny_hf_models):
        fake_hub_cache(work / "results" / "pretrained_models", name, folder)
        fake_hub_cache(hf_home / "hub", name, folder)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    trained = run_python(
        work,
        os.path.join(RECIPE, "train.py"),
        os.path.join(RECIPE, "hparams", "turbo.yaml"),
        f"--data_folder={tiny_corpus}",
        f"--audio_hub={hub_names[0]}",
        f"--text_hub={hub_names[1]}",
        *TINY_HEADS,
    )
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-4000:]
    for name in hub_names:
        add_stale_snapshot(work / "results" / "pretrained_models", name)
        add_stale_snapshot(hf_home / "hub", name)
    experiment = os.path.join("results", "pretrained", "turbo")
    experiment = os.path.join(experiment, "session5_seed1234")
    exported = run_python(
        work, "-m", "speechbrain_turbo.cli", "export", experiment, "model"
    )
    assert exported.returncode == 0, exported.stderr[-4000:]
    # Nothing cached any more: the model folder must be enough.
    shutil.move(hf_home, tmp_path / "moved_hf_home")
    shutil.move(work / "results" / "pretrained_models", tmp_path / "moved")
    test = json.loads((work / experiment / "test_screened.json").read_text())
    predictions = (work / experiment / "test_predictions.csv").read_text()
    recipe = dict(line.split(",")[::2] for line in predictions.splitlines()[1:])
    item_id, entry = next(iter(test.items()))
    classified = run_python(
        work,
        "-m",
        "speechbrain_turbo.cli",
        "classify",
        "--model",
        "model",
        "--audio",
        entry["wav"],
        "--text",
        entry["text"],
    )
    assert classified.returncode == 0, classified.stderr[-4000:]
    assert f"label: {recipe[item_id]} " in classified.stdout
