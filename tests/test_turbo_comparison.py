"""bench/turbo_comparison.sh: which runs it starts, which it skips, and
which files it keeps, with a stand-in for the generic recipe's
cross_validate.py behind a corpus' experiments/common.sh."""

import json
import os
import shutil
import subprocess
import sys

import pytest

SCRIPT = os.path.join(
    os.path.dirname(__file__), "..", "bench", "turbo_comparison.sh"
)

STAND_IN = os.path.join(
    os.path.dirname(__file__), "stand_ins", "cross_validate.py"
)


@pytest.fixture
def fake_recipe(tmp_path):
    recipe = tmp_path / "Fake" / "turbo"
    (recipe / "experiments").mkdir(parents=True)
    shutil.copy(STAND_IN, recipe / "cross_validate.py")
    # As a corpus' common.sh: the corpus' values go before the overrides.
    (recipe / "experiments" / "common.sh").write_text(
        'here=$(realpath "$(dirname "${BASH_SOURCE[0]}")/..")\n'
        'echo "$data" > "$here/data_given"\n'
        "cross_validate() {\n"
        "    [[ $1 == whisper.yaml ]] || exit 3\n"
        "    shift\n"
        '    python "$here/cross_validate.py" "$@"\n'
        "}\n"
    )
    return recipe


def compare(tmp_path, recipe, stage, **env):
    """Runs the script from ``tmp_path`` (its bench/measurements goes
    there) and returns the stand-in's log lines."""
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    bin_dir = os.path.dirname(sys.executable)
    result = subprocess.run(
        ["bash", os.path.abspath(SCRIPT), str(recipe), stage, "/data", "/p"],
        cwd=tmp_path,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_LOG": str(log),
            "ROOT": str(tmp_path / "runs"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_only_and_folds_choose_the_runs_and_finished_runs_are_kept(
    tmp_path, fake_recipe
):
    calls = compare(
        tmp_path,
        fake_recipe,
        "turbo",
        ONLY="turbo_t0.05_w1",
        FOLDS="2 3",
    )
    assert [(c[0], c[1], c[2], c[3]) for c in calls] == [
        ("turbo_t0.05_w1", "2", "1", "run"),
        ("turbo_t0.05_w1", "3", "1", "run"),
    ]
    assert "--temperature=0.05" in calls[0][4]
    assert (fake_recipe / "data_given").read_text() == "/data\n"

    kept = tmp_path / "bench/measurements/turbo_comparison/Fake/turbo"
    run = kept / "turbo_t0.05_w1" / "fold2_seed1"
    assert sorted(os.listdir(run)) == [
        "history.jsonl",
        "test_metrics.json",
        "test_predictions.csv",
        "train_log.txt",
    ]
    assert (kept / "turbo_t0.05_w1" / "results.csv").exists()
    assert (kept / "summary.md").exists()
    assert "| turbo_t0.05_w1 | 2 |" in (kept / "terms.md").read_text()

    # The runs folder is lost: the kept runs are not trained again.
    subprocess.run(["rm", "-r", str(tmp_path / "runs")], check=True)
    calls = compare(
        tmp_path, fake_recipe, "turbo", ONLY="turbo_t0.05_w1", FOLDS="2 3 4"
    )
    assert [c[3] for c in calls] == ["skip", "skip", "run"]


def test_keep_copies_finished_runs_only(tmp_path, fake_recipe):
    compare(tmp_path, fake_recipe, "turbo", ONLY="rdrop_w1", FOLDS="1")
    unfinished = tmp_path / "runs" / "turbo" / "rdrop_w1" / "fold2_seed1"
    unfinished.mkdir()
    (unfinished / "train_log.txt").write_text("epoch: 1\n")
    (tmp_path / "bench").rename(tmp_path / "bench_before")

    assert compare(tmp_path, fake_recipe, "keep") == []
    kept = tmp_path / "bench/measurements/turbo_comparison/Fake/turbo"
    assert (kept / "rdrop_w1" / "fold1_seed1" / "test_metrics.json").exists()
    assert not (kept / "rdrop_w1" / "fold2_seed1").exists()


def test_base_encoders_and_seeds(tmp_path, fake_recipe):
    calls = compare(
        tmp_path, fake_recipe, "finetune", ENCODERS="base", FOLDS="1"
    )
    assert [c[0] for c in calls] == ["layers3", "layers6_frozen3"]
    overrides = calls[1][4]
    assert "--audio_hub=/p/whisper-base" in overrides
    assert "--text_hub=/p/all-mpnet-base-v2" in overrides
    assert "--audio_frozen_layers=3" in overrides
    kept = tmp_path / "bench/measurements/turbo_comparison/Fake"
    assert (kept / "finetune-base" / "layers3" / "fold1_seed1").is_dir()

    calls = compare(
        tmp_path, fake_recipe, "arms", ONLY="baseline", FOLDS="1", SEEDS="2 3"
    )
    assert [(c[0], c[2]) for c in calls] == [
        ("baseline", "2"),
        ("baseline", "3"),
    ]
    assert "--audio_hub=/p/whisper-tiny.en" in calls[0][4]


def test_arms_are_compared_as_one_family_of_the_arms_that_ran(
    tmp_path, fake_recipe
):
    compare(
        tmp_path,
        fake_recipe,
        "arms",
        ONLY="baseline two_views_ce turbo",
        FOLDS="1 2",
        SEEDS="1",
    )
    kept = tmp_path / "bench/measurements/turbo_comparison/Fake/arms"
    rows = [
        line.split("|")[1].strip()
        for line in (kept / "comparison_UA.md").read_text().splitlines()[2:]
        if line.startswith("|")
    ]
    # The paper's arm did not run: three of the plan's four comparisons.
    assert rows == [
        "two_views_ce − baseline",
        "turbo − baseline",
        "turbo − two_views_ce",
    ]


def test_cross_modal_only_runs_beside_the_arms(tmp_path, fake_recipe):
    calls = compare(
        tmp_path, fake_recipe, "cross_modal_only", TURBO="--temperature=0.2"
    )
    assert {c[0] for c in calls} == {"turbo_cross_modal_only"}
    assert calls[0][4][-2:] == ["--temperature=0.2", "--in_modal_weight=0"]
    kept = tmp_path / "bench/measurements/turbo_comparison/Fake/arms"
    assert (kept / "turbo_cross_modal_only" / "fold5_seed1").is_dir()
