"""The guards of a run's settings: the command line's keys, and no resuming
of another configuration's run folder."""

import os

import pytest
from conftest import REPO

from speechbrain_turbo.errors import InputError, MissingInputError
from speechbrain_turbo.experiment import check_override_keys, check_run_identity
from speechbrain_turbo.recipe import load_hparams


def write_hparams(tmp_path, text="lr: 1\n"):
    path = tmp_path / "hparams.yaml"
    path.write_text(text)
    return str(path)


def test_same_run_resumes_and_other_runs_are_refused(tmp_path):
    folder = str(tmp_path / "run")
    hparams = write_hparams(tmp_path)
    check_run_identity(folder, hparams, "turbo_weight: 0.1\nseed: 1\n")
    # Same settings, other order: the same run.
    check_run_identity(folder, hparams, "seed: 1\nturbo_weight: 0.1\n")
    with pytest.raises(ValueError, match=r"turbo_weight \(was 0.1, now 0\)"):
        check_run_identity(folder, hparams, "turbo_weight: 0\nseed: 1\n")
    with pytest.raises(ValueError, match=r"seed \(was 1, now the file's"):
        check_run_identity(folder, hparams, "turbo_weight: 0.1\n")


def test_edited_hparams_file_is_refused(tmp_path):
    folder = str(tmp_path / "run")
    hparams = write_hparams(tmp_path)
    check_run_identity(folder, hparams, "")
    write_hparams(tmp_path, "lr: 2\n")
    with pytest.raises(ValueError, match="the content of hparams.yaml"):
        check_run_identity(folder, hparams, "")


def test_a_second_process_cannot_train_in_a_locked_folder(tmp_path):
    """The lock names the process holding it and frees itself when that
    process ends, however it ends."""
    import subprocess
    import sys

    from conftest import DEMO_RECIPE, run_python

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from speechbrain_turbo.experiment import lock_output_folder\n"
            f"lock_output_folder({str(tmp_path)!r})\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = run_python(
            DEMO_RECIPE,
            "train.py",
            "hparams/demo.yaml",
            f"--output_folder={tmp_path}",
        )
        assert result.returncode != 0
        (line,) = result.stderr.strip().splitlines()[-1:]
        assert f"is in use by process {holder.pid} on" in line
        assert not (tmp_path / "train_log.txt").exists()
    finally:
        holder.kill()
        holder.wait()
    # Killed: the lock is free again.
    from speechbrain_turbo.experiment import lock_output_folder

    lock_output_folder(str(tmp_path))


def test_misspelt_override_is_refused_naming_the_closest_keys():
    """A recipe's override that names no key of its hparams file stops
    before the file is loaded (an InputError: one line from train.py)."""
    demo = os.path.join(REPO, "recipes", "IEMOCAP", "turbo", "hparams")
    demo = os.path.join(demo, "demo.yaml")
    with pytest.raises(InputError, match="did you mean turbo_weight"):
        load_hparams(demo, "turbo_wieght: 0\n")
    with pytest.raises(MissingInputError, match="no such hparams file"):
        load_hparams(demo + ".missing", "")
    with pytest.raises(InputError, match="--no_such_key is not a key"):
        check_override_keys(demo, "lr: 0.1\nno_such_key: 1\n")
    small = os.path.join(REPO, "recipes", "AudioText", "turbo", "hparams")
    with pytest.raises(InputError, match="needs --train_csv=... --valid_csv"):
        load_hparams(os.path.join(small, "small.yaml"), "")
    # The file's keys, nested values and references pass.
    check_override_keys(
        demo, "turbo_weight: 0\nmodalities: [text]\nlr: !ref <lr_final>\n"
    )
