"""The paper preset: the overrides every recipe's hparams file documents turn
its TurboLoss into the paper's six-term sum."""

import glob
import os
import re

import pytest
import torch
from conftest import REPO
from hyperpyyaml import load_hyperpyyaml
from test_losses import paper_objective, random_views

from speechbrain_turbo.random_hf_models import save_random_whisper_model

HPARAMS = sorted(
    glob.glob(os.path.join(REPO, "recipes", "*", "*", "hparams", "*.yaml"))
)


def paper_overrides(yaml_text):
    """The ``--key=value`` lines under the header's "paper's objective"."""
    after = yaml_text.split("The paper's objective", 1)[1].splitlines()[1:]
    header = []
    for line in after:
        if line.startswith("#   --"):
            header.append(line)
        elif header:
            break
    pairs = re.findall(r"--(\w+)=(\S+)", "\n".join(header))
    return {key: value for key, value in pairs if key != "experiment_name"}


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    return save_random_whisper_model(str(tmp_path_factory.mktemp("whisper")))


@pytest.mark.parametrize(
    "hparams_file", HPARAMS, ids=[os.path.relpath(p, REPO) for p in HPARAMS]
)
def test_paper_overrides_give_the_six_term_sum(
    hparams_file, tmp_path, monkeypatch, tiny_hf_models, tiny_whisper
):
    with open(hparams_file, encoding="utf-8") as f:
        yaml_text = f.read()
    overrides = paper_overrides(yaml_text)
    assert overrides == {
        "turbo_weight": "1.0",
        "turbo_reduction": "sum",
        "turbo_symmetric": "cross_modal",
        "label_aware": "False",
        "mask_repeated_transcripts": "False",
    }
    # Every overridden key is one of the file's own.
    for key in overrides:
        assert re.search(rf"^{key}:", yaml_text, flags=re.MULTILINE), key
    # Load the file as a run would, with tiny local encoders for the hubs.
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("ID,wav,text,label\na,a.wav,hi,x\nb,b.wav,no,y\n")
    for key in re.findall(r"^(\w+): !PLACEHOLDER", yaml_text, re.MULTILINE):
        overrides[key] = str(manifest if key.endswith("_csv") else tmp_path)
    whisper = "HFWhisperEncoder" in yaml_text
    hubs = {
        "audio_hub": tiny_whisper if whisper else tiny_hf_models[0],
        "text_hub": tiny_hf_models[1],
    }
    overrides.update({k: v for k, v in hubs.items() if f"\n{k}:" in yaml_text})
    overrides["output_folder"] = str(tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    text = "\n".join(f"{k}: {v}" for k, v in overrides.items())
    hparams = load_hyperpyyaml(yaml_text, text)

    assert hparams["turbo_weight"] == 1.0
    assert hparams["mask_repeated_transcripts"] is False
    loss_fn = hparams["turbo_loss"]
    assert not loss_fn.label_aware and not loss_fn.label_positives
    views = random_views(2, batch_size=8, dim=6, seed=4)
    (h1a, h2a), (h1t, h2t) = views["audio"], views["text"]
    temperature = 1 / float(loss_fn.inverse_temperature())
    expected = paper_objective(h1a, h2a, h1t, h2t, temperature)
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 0, 1])  # ignored by the preset
    out = loss_fn(views, labels=labels)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
