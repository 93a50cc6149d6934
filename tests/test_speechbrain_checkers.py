"""SpeechBrain's own consistency checkers on this repository: every
function and class has a docstring, and every top-level key of every
hparams file is read by the recipe or the library.

The checkers (``tests/utils/check_docstrings.py`` and
``tests/utils/check_yaml.py``) ship with SpeechBrain's repository, not its
package: point ``SPEECHBRAIN_SOURCE`` at a checkout to run these tests:

    SPEECHBRAIN_SOURCE=~/speechbrain pytest tests/test_speechbrain_checkers.py

Without it they are skipped; ``test_yaml_consistency.py`` applies the YAML
rule on its own.
"""

import glob
import importlib.util
import os

import pytest
from conftest import REPO

SOURCE = os.environ.get("SPEECHBRAIN_SOURCE", "")
CHECKERS = os.path.join(SOURCE, "tests", "utils")

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(CHECKERS, "check_yaml.py")),
    reason="set SPEECHBRAIN_SOURCE to a SpeechBrain checkout to run its "
    "checkers (they are not in the pip package)",
)

HPARAMS = sorted(
    glob.glob(os.path.join(REPO, "recipes", "*", "turbo", "hparams", "*.yaml"))
)


def checker(name):
    """Imports one of SpeechBrain's checker modules from the checkout."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(CHECKERS, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "hparams", HPARAMS, ids=[os.path.relpath(h, REPO) for h in HPARAMS]
)
def test_every_hparams_key_is_used(hparams, tmp_path):
    # The checker reads one script; a recipe's code is its folder's scripts
    # and the library they call.
    recipe = os.path.dirname(os.path.dirname(hparams))
    sources = sorted(glob.glob(os.path.join(recipe, "*.py")))
    sources += sorted(
        glob.glob(os.path.join(REPO, "speechbrain_turbo", "*.py"))
    )
    script = tmp_path / "recipe_and_library.py"
    script.write_text(
        "\n".join(open(path, encoding="utf-8").read() for path in sources)
    )
    assert checker("check_yaml").check_yaml_vs_script(hparams, str(script))


def test_every_function_and_class_has_a_docstring():
    folders = ["/speechbrain_turbo/", "/recipes/", "/bench/"]
    assert checker("check_docstrings").check_docstrings(REPO, folders)
