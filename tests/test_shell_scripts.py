"""Every shell script of the repository passes ShellCheck (a sourced
``common.sh`` is followed from its folder, as the scripts source it)."""

import glob
import os
import shutil
import subprocess

import pytest
from conftest import REPO

SCRIPTS = sorted(
    glob.glob(
        os.path.join(REPO, "recipes", "*", "turbo", "experiments", "*.sh")
    )
    + glob.glob(os.path.join(REPO, "bench", "*.sh"))
    + glob.glob(os.path.join(REPO, "tools", "*.sh"))
    + [os.path.join(REPO, ".ci", "run")]
)


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck is not installed (pip install -e '.[dev]')",
)
@pytest.mark.parametrize(
    "script", SCRIPTS, ids=[os.path.relpath(s, REPO) for s in SCRIPTS]
)
def test_shellcheck_finds_nothing(script):
    result = subprocess.run(
        ["shellcheck", "-x", os.path.basename(script)],
        cwd=os.path.dirname(script),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
