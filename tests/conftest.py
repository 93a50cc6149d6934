"""Shared fixtures: a tiny synthesised corpus, tiny random HF models and a
tiny exported model, each built once per test run (also when pytest-xdist
runs the tests in several processes)."""

import csv
import glob
import json
import os
import subprocess
import sys

# pytest-xdist runs one test process per core: one thread each, as two
# torch processes with a thread per core slow each other down many times.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest
from filelock import FileLock

from speechbrain_turbo.demo import synthesize_corpus
from speechbrain_turbo.random_hf_models import (
    save_random_speech_model,
    save_random_text_model,
)

REPO = os.path.join(os.path.dirname(__file__), os.pardir)


def run_python(cwd, *args):
    """Runs ``python *args`` in ``cwd`` offline on one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def run_under_torchrun(recipe, *args, processes=2):
    """Runs a recipe's ``train.py *args`` in ``processes`` gloo processes
    on this CPU (``recipe``: its folder).
    """
    return run_python(
        recipe,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "train.py",
        *args,
        "--distributed_backend=gloo",
    )


def corpus_transcripts(corpus):
    """Every transcript line's text in an IEMOCAP-layout tree."""
    pattern = os.path.join(corpus, "Session*", "dialog", "transcriptions", "*")
    texts = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            texts += [line.split(":", 1)[1] for line in f if ":" in line]
    return texts


def built_once(tmp_path_factory, name, build):
    """A folder of this test run that ``build(folder)`` fills once.

    Under pytest-xdist every worker gets the same folder (in the run's
    common temporary folder); the first to arrive builds it while the
    others wait on a file lock.

    Arguments
    ---------
    tmp_path_factory : pytest.TempPathFactory
        pytest's session temporary-path factory.
    name : str
        The folder's name, unique among the shared fixtures.
    build : callable
        Called with the (new, empty) folder.

    Returns
    -------
    pathlib.Path
        The built folder.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # common to all workers of this run
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        done = root / f"{name}.built"
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """An IEMOCAP-layout demo corpus of 8 utterances per speaker."""

    def build(folder):
        synthesize_corpus(str(folder / "corpus"), utterances_per_speaker=8)

    return built_once(tmp_path_factory, "tiny_corpus", build) / "corpus"


@pytest.fixture(scope="session")
def tiny_hf_models(tmp_path_factory, tiny_corpus):
    """Local folders of a tiny wav2vec2 and a tiny RoBERTa (+ tokenizer)."""

    def build(root):
        save_random_speech_model(str(root / "wav2vec2"), "wav2vec2")
        save_random_text_model(
            str(root / "roberta"), corpus_transcripts(tiny_corpus), "roberta"
        )

    root = built_once(tmp_path_factory, "tiny_hf", build)
    return str(root / "wav2vec2"), str(root / "roberta")


DEMO_RECIPE = os.path.join(REPO, "recipes", "IEMOCAP", "turbo")
# The small-encoder recipes at their smallest (encoders and epochs).
TINY_SMALL_ENCODERS = [
    "--number_of_epochs=2",
    "--batch_size=8",
    "--channels=16",
    "--fusion_dim=16",
    "--projection_dim=8",
    "--token_embedding_dim=8",
]
# The demo recipe on a tiny corpus.
TINY = [
    "--demo_utterances_per_speaker=8",
    *TINY_SMALL_ENCODERS,
    "--vocab_size=80",
]


def cli_classify_manifest(model, manifest, output):
    """``speechbrain-turbo classify --manifest``'s output rows by ID."""
    result = cli_classify(
        model, "--manifest", str(manifest), "--output", str(output)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output, newline="", encoding="utf-8") as f:
        return {row["ID"]: row for row in csv.DictReader(f)}


def cli_classify(model, *arguments):
    """Runs ``speechbrain-turbo classify --model MODEL *arguments``."""
    return run_python(
        REPO,
        "-m",
        "speechbrain_turbo.cli",
        "classify",
        "--model",
        str(model),
        *arguments,
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_corpus):
    """A tiny demo-recipe run and its exported model folder.

    Returns the run folder, the model folder, a test manifest
    (``ID,wav,text``) and the screened test entries.
    """

    def build(folder):
        trained = run_python(
            DEMO_RECIPE,
            "train.py",
            "hparams/demo.yaml",
            f"--data_folder={tiny_corpus}",
            f"--output_folder={folder / 'run'}",
            *TINY,
            "--modality_dropout=0.3",
        )
        assert trained.returncode == 0, trained.stderr[-3000:]
        result = run_python(
            REPO,
            "-m",
            "speechbrain_turbo.cli",
            "export",
            str(folder / "run"),
            str(folder / "model"),
            "--examples=2",
        )
        assert result.returncode == 0, result.stderr[-3000:]

    folder = built_once(tmp_path_factory, "inference", build)
    run = folder / "run"
    test = json.loads((run / "test_screened.json").read_text())
    manifest = tmp_path_factory.mktemp("manifest") / "test.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav", "text"])
        for item_id, entry in test.items():
            writer.writerow([item_id, entry["wav"], entry["text"]])
    return run, folder / "model", manifest, test
