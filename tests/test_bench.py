"""The benchmark script runs, and its FLOP counts show what the twin pass
shares: a smoke test with tiny encoders (no timing is checked)."""

import json
import os
import sys

import pytest
from conftest import REPO, run_python

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_results(tmp_path_factory):
    """bench/step_cost.py on both setups, tiny sizes, one repeat."""
    report = tmp_path_factory.mktemp("bench")
    result = run_python(
        REPO,
        "bench/step_cost.py",
        f"--report={report}",
        f"--work={report / 'work'}",
        "--hf_size=tiny",
        "--batch_size=2",
        "--repeats=1",
        "--demo_repeats=1",
        "--warmup=0",
        "--loss_repeats=1",
        "--max_seconds=3.5",
        "--inference_utterances=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(report / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    assert os.path.exists(report / "results.md")
    return {r["setup"]: r for r in results["results"]}, results["meta"]


def test_demo_twin_pass_doubles_the_encoder_flops(bench_results):
    demo = bench_results[0]["demo"]
    assert set(demo["step_s"]) == {"baseline", "turbo"}
    # The Fbank front end is computed once; the encoders run on 2B rows.
    assert 1.9 < demo["audio_branch_flop_ratio"]["turbo"] <= 2.0
    assert 1.9 < demo["flop_ratio"]["turbo"] < 2.1
    assert 0 < demo["loss_share"] < 1


def test_full_setup_shares_the_frozen_cnn(bench_results):
    full = bench_results[0]["full"]
    variants = {
        "baseline",
        "turbo",
        "turbo_unshared_cnn",
        "turbo_checkpointing",
    }
    assert set(full["step_s"]) == variants
    audio = full["audio_branch_flop_ratio"]
    # Run per view, the whole audio branch doubles; shared, the CNN does not.
    assert audio["turbo_unshared_cnn"] == pytest.approx(2.0, abs=1e-6)
    assert audio["turbo"] < 1.95
    assert (
        full["flop_ratio"]["turbo"] < full["flop_ratio"]["turbo_unshared_cnn"]
    )
    # Checkpointing recomputes the forward in backward.
    assert (
        full["flop_ratio"]["turbo_checkpointing"] > full["flop_ratio"]["turbo"]
    )
    assert set(full["inference_s_per_utterance"]) == {"turbo", "baseline"}


def test_report_names_the_machine_and_the_allocator(bench_results):
    meta = bench_results[1]
    assert meta["command"].startswith("python bench/step_cost.py")
    assert "threads" in meta["machine"]
    assert meta["allocator"].startswith(("GLIBC_TUNABLES", "default"))


def test_whisper_step_bench_times_both_encodings(tmp_path):
    """bench/whisper_step.py on a tiny random Whisper: both encodings are
    timed and their pooled outputs compared (the views' difference is
    asserted inside the bench)."""
    from speechbrain_turbo.random_hf_models import save_random_whisper_model

    whisper = save_random_whisper_model(str(tmp_path / "whisper"))
    result = run_python(
        REPO,
        "bench/whisper_step.py",
        f"--whisper={whisper}",
        f"--output={tmp_path / 'out'}",
        "--num_layers=1",
        "--batch_size=2",
        "--seconds=0.5",
        "--steps=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "whisper_step.json").read_text())
    assert set(report["median_step_seconds"]) == {"own_length", "30s"}
    assert len(report["step_seconds"]["30s"]) == 1
    assert -1.0 <= report["pooled_cosine_min"] <= 1.0

    # Frozen lower layers against every layer trained: in evaluation the
    # two give the same output; in training the views still differ.
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import whisper_step

    whisper_step.main(
        [
            f"--whisper={whisper}",
            f"--output={tmp_path / 'frozen'}",
            "--num_layers=0",
            "--frozen_layers=1",
            "--batch_size=2",
            "--seconds=0.5",
            "--steps=1",
        ]
    )
    report = json.loads((tmp_path / "frozen" / "whisper_step.json").read_text())
    assert set(report["median_step_seconds"]) == {
        "all_trained",
        "first_1_frozen",
    }
    assert report["speedup_first_1_frozen"] > 0
    assert report["pooled_cosine_min"] == pytest.approx(1.0, abs=1e-5)
    assert all(c < 1.0 for c in report["views_mean_cosine"].values())


def test_text_frozen_layers_bench_times_the_three_parts(tmp_path):
    """bench/text_frozen_layers.py on tiny random models: the text step, its
    frozen layers alone and the audio step are timed, and the saving is a
    fraction of the step."""
    from speechbrain_turbo.random_hf_models import (
        save_random_text_model,
        save_random_whisper_model,
    )

    text = save_random_text_model(str(tmp_path / "text"), ["a few words"])
    whisper = save_random_whisper_model(str(tmp_path / "whisper"))
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import text_frozen_layers

    text_frozen_layers.main(
        [
            f"--text={text}",
            f"--whisper={whisper}",
            f"--output={tmp_path / 'out'}",
            "--text_frozen_layers=1",
            "--audio_frozen_layers=1",
            "--batch_size=2",
            "--tokens=5",
            "--seconds=0.5",
            "--steps=1",
        ]
    )
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(report["median_step_seconds"]) == {
        "text_step",
        "frozen_once",
        "audio_step",
    }
    assert all(len(v) == 1 for v in report["step_seconds"].values())
    assert 0 < report["saving_fraction_of_step"] < 1


def test_probe_on_manifests_chooses_the_features_that_carry_the_label(
    tmp_path,
):
    """bench/whisper_probe.py on a preparation's fold manifests, with text:
    every clip is the same silence and the transcript alone tells the
    label, so validation must choose a feature set holding the text and the
    test folds come out perfect."""
    import numpy as np
    import soundfile as sf

    from speechbrain_turbo.random_hf_models import (
        save_random_text_model,
        save_random_whisper_model,
    )

    words = {"joy": "what a lovely day", "anger": "leave me alone now"}
    text = save_random_text_model(str(tmp_path / "text"), list(words.values()))
    whisper = save_random_whisper_model(str(tmp_path / "whisper"))
    rows = []
    for i in range(12):
        label = ("joy", "anger")[i % 2]
        sf.write(tmp_path / f"u{i}.wav", np.zeros(4800), 16000)
        rows.append(f"u{i},$data_root/u{i}.wav,{words[label]},{label}")
    groups = {k: rows[4 * (k - 1) : 4 * k] for k in (1, 2, 3)}
    for fold in groups:
        valid = fold % 3 + 1
        train = [r for k in groups if k not in (fold, valid) for r in groups[k]]
        parts = {"train": train, "valid": groups[valid], "test": groups[fold]}
        (tmp_path / "folds" / f"fold{fold}").mkdir(parents=True)
        for part, lines in parts.items():
            path = tmp_path / "folds" / f"fold{fold}" / f"{part}.csv"
            path.write_text("\n".join(["ID,wav,text,label", *lines]) + "\n")
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import whisper_probe

    whisper_probe.main(
        [
            f"--manifests={tmp_path / 'folds'}",
            f"--data_folder={tmp_path}",
            f"--whisper={whisper}",
            f"--text_encoder={text}",
            "--metric=macro_F1",
            "--probe_only",
            f"--output={tmp_path / 'out'}",
        ]
    )
    report = json.loads((tmp_path / "out" / "whisper_probe.json").read_text())
    assert report["utterances"] == 12
    folds = report["probe_own_length"]["folds"]
    assert [f["test_fold"] for f in folds] == [1, 2, 3]
    assert all("text" in f["features"] for f in folds)
    assert all(f["valid_macro_F1"] == 1.0 for f in folds)
    assert report["probe_own_length"]["test_macro_F1_mean"] == 1.0
