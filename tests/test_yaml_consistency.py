"""SpeechBrain's consistency rule for recipes: every top-level key of every
hparams file is used, by another key (``<key>``), by the recipe's train.py,
by the library (``speechbrain_turbo``), or by SpeechBrain's Brain as a run
option (e.g. ``ckpt_interval_minutes``).
"""

import glob
import os
import re

import pytest
from conftest import REPO
from speechbrain.core import RunOptions

LIBRARY = sorted(glob.glob(os.path.join(REPO, "speechbrain_turbo", "*.py")))
HPARAMS = sorted(
    glob.glob(os.path.join(REPO, "recipes", "*", "*", "hparams", "*.yaml"))
)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def top_level_keys(yaml_text):
    return re.findall(r"^([A-Za-z_][\w]*):", yaml_text, flags=re.MULTILINE)


# Read from the loaded hparams: hparams["key"], hparams.get("key"),
# hparams.key, getattr(<...>hparams, "key"), "key" in hparams.
used_in_code = (
    r"""hparams\[["']{key}["']\]|hparams\.get\(["']{key}["']"""
    r"""|hparams\.{key}\b|getattr\(\s*[\w.]*hparams,\s*["']{key}["']"""
    r"""|["']{key}["'] in [\w.]*hparams"""
)


def test_every_recipe_has_hparams_files():
    recipes = {os.path.dirname(os.path.dirname(p)) for p in HPARAMS}
    assert len(recipes) >= 2 and len(HPARAMS) >= 4


@pytest.mark.parametrize(
    "hparams_file", HPARAMS, ids=[os.path.relpath(p, REPO) for p in HPARAMS]
)
def test_every_top_level_key_is_used(hparams_file):
    yaml_text = read(hparams_file)
    recipe = os.path.dirname(os.path.dirname(hparams_file))
    code = "".join(read(p) for p in LIBRARY)
    code += "".join(read(p) for p in glob.glob(os.path.join(recipe, "*.py")))
    run_options = set(RunOptions().as_dict())
    unused = []
    for key in top_level_keys(yaml_text):
        if key in run_options:
            continue
        if key.startswith("__"):  # applied for its effect (e.g. the seed)
            continue
        in_yaml = f"<{key}>" in yaml_text
        in_code = re.search(used_in_code.format(key=key), code)
        if not (in_yaml or in_code):
            unused.append(key)
    assert not unused, f"{hparams_file}: unused top-level keys {unused}"
