"""The cross-validation runner: resume, locking and tables."""

import csv
import fcntl
import json
import os

import pytest

from speechbrain_turbo import cross_validate


def fake_metrics(folder, ua):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "test_metrics.json"), "w") as f:
        json.dump(
            {
                "WA": ua + 0.01,
                "UA": ua,
                "macro_F1": ua - 0.01,
                "epoch": 3,
                "process_cpu_minutes": 12.0,
                "selected_on_valid": {"UA": ua + 0.05},
            },
            f,
        )


def test_finished_runs_are_not_run_again_and_tables_are_written(
    tmp_path, caplog
):
    root = tmp_path / "cv"
    fake_metrics(root / "demo" / "fold5_seed1", 0.5)
    fake_metrics(root / "demo" / "fold5_seed2", 0.7)
    without_text = (
        root / "demo" / "fold5_seed2" / "test_metrics_without_text.json"
    )
    without_text.write_text(json.dumps({"UA": 0.3, "without": ["text"]}))
    # A missing hparams file would make any real run fail: none may start.
    cross_validate.main(
        str(tmp_path / "train.py"),
        "test_session",
        [
            "missing.yaml",
            "--name=demo",
            "--folds",
            "5",
            "--seeds",
            "1",
            "2",
            f"--output_root={root}",
        ],
    )
    table = (root / "demo" / "results.md").read_text()
    assert (
        "| 5 | 1 | 0.5500 | 0.5100 | 0.5000 | 0.4900 | - | 12.0000 | 3 |"
        in table
    )
    assert "0.6000 ± 0.1414" in table  # mean ± sample std of test UA
    assert (
        "| 5 | 2 | 0.7500 | 0.7100 | 0.7000 | 0.6900 | 0.3000 | 12.0000 | 3 |"
        in table
    )
    csv_text = (root / "demo" / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("fold,seed,valid_UA,WA")
    assert "python cross_validate.py missing.yaml" in caplog.text


def test_a_run_locked_by_another_process_is_skipped(tmp_path):
    folder = tmp_path / "fold1_seed1"
    folder.mkdir()
    with open(folder / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cross_validate.run_one(
            str(tmp_path / "train.py"),
            "missing.yaml",
            str(folder),
            1,
            ["--test_session=1"],
            threads=1,
        )
    assert result is None
    assert not (folder / "stdout.txt").exists()


def stand_in_train_py(folder, body, **metrics):
    """A stand-in train.py in ``folder``: finds its ``--output_folder``
    (``out``), runs the lines of ``body``, then writes its test metrics
    (``metrics`` added to fixed ones)."""
    fields = {
        "WA": 0.6,
        "UA": 0.5,
        "macro_F1": 0.4,
        "epoch": 2,
        "selected_on_valid": {"UA": 0.5},
        **metrics,
    }
    path = folder / "train.py"
    path.write_text(
        "import json, os, sys, time\n"
        "out = [a.split('=', 1)[1] for a in sys.argv if "
        "a.startswith('--output_folder=')][0]\n"
        + "".join(f"{line}\n" for line in body)
        + f"json.dump({fields!r}, "
        "open(os.path.join(out, 'test_metrics.json'), 'w'))\n"
    )
    return path


def test_delete_checkpoints_keeps_the_results_of_each_run(tmp_path):
    # A stand-in train.py: writes its metrics and one checkpoint.
    train_py = stand_in_train_py(
        tmp_path,
        [
            "os.makedirs(os.path.join(out, 'save', 'CKPT+1'))",
            "open(os.path.join(out, 'save', 'CKPT+1', 'model.ckpt'), 'wb')"
            ".write(bytes(1000))",
            "open(os.path.join(out, 'save', 'label_encoder.txt'), 'w').close()",
        ],
    )
    root = tmp_path / "cv"
    arguments = ["hparams.yaml", "--name=run", "--folds", "1", "--seeds", "1"]
    cross_validate.main(
        str(train_py), "test_fold", [*arguments, f"--output_root={root}"]
    )
    run = root / "run" / "fold1_seed1"
    assert (run / "save" / "CKPT+1" / "model.ckpt").exists()  # kept by default

    cross_validate.main(
        str(train_py),
        "test_fold",
        [*arguments, f"--output_root={root}", "--delete_checkpoints"],
    )
    assert not (run / "save" / "CKPT+1").exists()
    assert (run / "save" / "label_encoder.txt").exists()
    assert "| 1 | 1 | 0.5000 |" in (root / "run" / "results.md").read_text()


def test_prepared_folds_are_given_to_the_generic_recipe(tmp_path):
    # A stand-in train.py: records its arguments and writes its metrics.
    train_py = stand_in_train_py(
        tmp_path,
        [
            "with open(os.path.join(out, 'argv.json'), 'w') as f:",
            "    json.dump(sys.argv, f)",
        ],
    )
    folds = tmp_path / "folds"
    for fold in (1, 2):
        (folds / f"fold{fold}").mkdir(parents=True)
        for split in ("train", "valid", "test"):
            (folds / f"fold{fold}" / f"{split}.csv").write_text("ID\n")
    root = tmp_path / "cv"
    arguments = [
        "hparams.yaml",
        "--name=run",
        f"--manifests={folds}",
        "--folds",
        "2",
        "--seeds",
        "3",
        f"--output_root={root}",
        "--corpus_overrides=--number_of_epochs=6 --num_workers=0",
        "--",
        "--data_folder=/corpus",
        "--number_of_epochs=1",
    ]
    cross_validate.main(str(train_py), argv=arguments)
    argv = json.loads((root / "run" / "fold2_seed3" / "argv.json").read_text())
    assert f"--train_csv={folds}/fold2/train.csv" in argv
    assert f"--test_csv={folds}/fold2/test.csv" in argv
    assert "--seed=3" in argv
    # The corpus' values go first; the user's replace them (SpeechBrain
    # refuses a key given twice).
    overrides = argv[argv.index("--num_workers=0") - 1 :]
    assert overrides == [
        "--number_of_epochs=1",
        "--num_workers=0",
        "--data_folder=/corpus",
    ]

    # A fold the preparation did not write is named before anything runs.
    with pytest.raises(SystemExit):
        cross_validate.main(
            str(train_py),
            argv=[*arguments[:4], "3", *arguments[5:]],
        )
    assert not (root / "run" / "fold3_seed3").exists()


def finished_sweep(root, runs):
    """Fold-4 runs already finished (``{name: test UA per seed}``),
    tabulated by the runner: none of them trains again."""
    for name, uas in runs.items():
        for seed, ua in enumerate(uas, start=1):
            fake_metrics(root / name / f"fold4_seed{seed}", ua)
        seeds = [str(seed) for seed in range(1, len(uas) + 1)]
        cross_validate.main(
            str(root / "train.py"),
            "test_fold",
            [
                "missing.yaml",
                f"--name={name}",
                "--folds",
                "4",
                "--seeds",
                *seeds,
                f"--output_root={root}",
            ],
        )


def test_collect_tabulates_every_configuration(tmp_path):
    finished_sweep(
        tmp_path / "sweep", {"baseline": (0.5, 0.6), "turbo": (0.7, 0.7)}
    )
    table = cross_validate.collect(str(tmp_path / "sweep"))
    assert "| baseline | 2 | 60.0 ± 7.1 | 56.0 ± 7.1 | 55.0 ± 7.1 |" in table
    assert "| turbo | 2 | 75.0 ± 0.0 | 71.0 ± 0.0 | 70.0 ± 0.0 |" in table
    assert table.rstrip().endswith("| - | 12.0 ± 0.0 |")
    assert (tmp_path / "sweep" / "summary.md").read_text() == table


def test_collect_pairs_every_configuration_with_a_reference(tmp_path):
    runs = {"baseline": (0.5, 0.6, 0.55), "turbo": (0.6, 0.58, 0.65)}
    finished_sweep(tmp_path / "sweep", runs)
    table = cross_validate.collect(str(tmp_path / "sweep"), "baseline")
    assert "test UA − baseline, paired |" in table.splitlines()[0]
    # Differences +10, -2, +10 points.
    assert "| +6.0 ± 6.9 (2 of 3 ahead) |" in table
    assert "| +0.0 ± 0.0 (0 of 3 ahead) |" in table  # itself
    # Any metric, in its own column.
    table = cross_validate.collect(
        str(tmp_path / "sweep"), "baseline", ["UA", "macro_F1"]
    )
    header = table.splitlines()[0]
    assert header.endswith(
        "| test UA − baseline, paired | test macro-F1 − baseline, paired |"
    )
    assert "| +6.0 ± 6.9 (2 of 3 ahead) | +6.0 ± 6.9 (2 of 3 ahead) |" in table


def test_cpu_minutes_count_every_attempt_at_a_run(tmp_path):
    # A stand-in train.py: burns CPU, fails its first attempt (as a run
    # killed mid-training), finishes the second.
    train_py = stand_in_train_py(
        tmp_path,
        [
            "start = time.process_time()",
            "while time.process_time() - start < 0.3:",
            "    pass",
            "marker = os.path.join(out, 'tried')",
            "if not os.path.exists(marker):",
            "    open(marker, 'w').close()",
            "    sys.exit(1)",
        ],
        process_cpu_minutes=0.001,
    )
    root = tmp_path / "cv"
    arguments = ["h.yaml", "--name=run", "--folds", "1", "--seeds", "1"]
    arguments.append(f"--output_root={root}")
    with pytest.raises(SystemExit):
        cross_validate.main(str(train_py), "test_fold", arguments)
    cross_validate.main(str(train_py), "test_fold", arguments)
    run = root / "run" / "fold1_seed1"
    attempts = (run / "cpu_seconds.txt").read_text().split()
    assert len(attempts) == 2 and all(float(a) >= 0.3 for a in attempts)
    with open(root / "run" / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["cpu_minutes"]) == pytest.approx(
        sum(float(a) for a in attempts) / 60, abs=1e-3
    )
