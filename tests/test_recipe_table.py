"""``tests/recipes/Turbo.csv`` lists the recipes in SpeechBrain's
recipe-test format (``tests/recipes/*.csv`` upstream): its files exist and
its debug flags name keys of the hparams files."""

import csv
import os
import re

from conftest import REPO
from speechbrain.core import RunOptions

TABLE = os.path.join(REPO, "tests", "recipes", "Turbo.csv")
# SpeechBrain's columns, in its order.
COLUMNS = [
    "Task",
    "Dataset",
    "Script_file",
    "Hparam_file",
    "Data_prep_file",
    "Readme_file",
    "Result_url",
    "HF_repo",
    "test_debug_flags",
    "test_debug_checks",
    "performance",
]


def read_rows():
    with open(TABLE, encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_every_hparams_file_is_listed_and_its_files_exist():
    rows = read_rows()
    listed = {row["Hparam_file"] for row in rows}
    for recipe in ("IEMOCAP", "AudioText"):
        folder = os.path.join(REPO, "recipes", recipe, "turbo", "hparams")
        for name in os.listdir(folder):
            assert f"recipes/{recipe}/turbo/hparams/{name}" in listed
    # The public corpora are preparations for the generic recipe.
    for corpus in ("EmoDB", "MUStARD"):
        assert not os.path.exists(
            os.path.join(REPO, "recipes", corpus, "turbo", "hparams")
        )
    for row in rows:
        for column in ("Script_file", "Hparam_file", "Readme_file"):
            assert os.path.isfile(os.path.join(REPO, row[column])), row
        if row["Data_prep_file"]:
            assert os.path.isfile(os.path.join(REPO, row["Data_prep_file"]))


def test_debug_flags_are_keys_of_the_hparams_file():
    run_options = set(RunOptions().as_dict())
    tested = [row for row in read_rows() if row["test_debug_flags"].strip()]
    assert tested, "at least the demo recipe runs in SpeechBrain's harness"
    for row in tested:
        with open(
            os.path.join(REPO, row["Hparam_file"]), encoding="utf-8"
        ) as f:
            keys = set(re.findall(r"^(\w+):", f.read(), flags=re.MULTILINE))
        for flag in row["test_debug_flags"].split():
            key = flag.lstrip("-").split("=")[0]
            assert key in keys or key in run_options, (row["Hparam_file"], key)


def test_corpus_values_are_keys_of_the_generic_hparams_files():
    generic = os.path.join(REPO, "recipes", "AudioText", "turbo", "hparams")
    for corpus in ("EmoDB", "MUStARD"):
        common = os.path.join(
            REPO, "recipes", corpus, "turbo", "experiments", "common.sh"
        )
        with open(common, encoding="utf-8") as f:
            blocks = re.findall(r"(\w+\.yaml)\)(.*?);;", f.read(), re.DOTALL)
        assert blocks, common
        for hparams, block in blocks:
            with open(os.path.join(generic, hparams), encoding="utf-8") as f:
                keys = set(re.findall(r"^(\w+):", f.read(), flags=re.MULTILINE))
            for key in re.findall(r"--(\w+)=", block):
                assert key in keys, (common, hparams, key)
