"""The cross-validation runner: resume, locking and tables."""

import fcntl
import importlib
import json
import os
import sys

sys.path.insert(
    0,
    os.path.join(
        os.path.dirname(__file__), os.pardir, "recipes", "IEMOCAP", "turbo"
    ),
)
cross_validate = importlib.import_module("cross_validate")


def fake_metrics(folder, ua):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "test_metrics.json"), "w") as f:
        json.dump(
            {
                "WA": ua + 0.01,
                "UA": ua,
                "macro_F1": ua - 0.01,
                "epoch": 3,
                "selected_on_valid": {"UA": ua + 0.05},
            },
            f,
        )


def test_finished_runs_are_not_run_again_and_tables_are_written(
    tmp_path, capsys
):
    root = tmp_path / "cv"
    fake_metrics(root / "demo" / "session5_seed1", 0.5)
    fake_metrics(root / "demo" / "session5_seed2", 0.7)
    without_text = (
        root / "demo" / "session5_seed2" / "test_metrics_without_text.json"
    )
    without_text.write_text(json.dumps({"UA": 0.3, "without": ["text"]}))
    # A missing hparams file would make any real run fail: none may start.
    cross_validate.main(
        [
            "missing.yaml",
            "--name=demo",
            "--folds",
            "5",
            "--seeds",
            "1",
            "2",
            f"--output_root={root}",
        ]
    )
    table = (root / "demo" / "results.md").read_text()
    assert "| 5 | 1 | 0.5500 | 0.5100 | 0.5000 | 0.4900 | - | 3 |" in table
    assert "0.6000 ± 0.1414" in table  # mean ± sample std of test UA
    assert "| 5 | 2 | 0.7500 | 0.7100 | 0.7000 | 0.6900 | 0.3000 | 3 |" in table
    csv_text = (root / "demo" / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("session,seed,valid_UA,WA")
    assert "python cross_validate.py missing.yaml" in capsys.readouterr().out


def test_a_run_locked_by_another_process_is_skipped(tmp_path):
    folder = tmp_path / "session1_seed1"
    folder.mkdir()
    with open(folder / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = cross_validate.run_one(
            "missing.yaml", str(folder), 1, 1, [], threads=1
        )
    assert result is None
    assert not (folder / "stdout.txt").exists()
