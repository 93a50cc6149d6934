"""Shared fixtures: a tiny synthesised corpus, tiny random HF models, a
tiny demo-recipe run and its exported model, each built once per test run
(also when pytest-xdist runs the tests in several processes)."""

import contextlib
import csv
import glob
import io
import json
import logging
import os
import subprocess
import sys
import warnings

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


def pytest_collection_modifyitems(items):
    """Runs the modules holding slow tests first, each module's tests
    together and in their order. With pytest-xdist (``--dist loadscope
    --no-loadscope-reorder``, pyproject.toml) each process takes the next
    module when it is done with its own: the many quick modules then fill
    the end of the run on every process, instead of a long module started
    last keeping one process busy while the others wait."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


def run_offline(cwd, command, **env):
    """Runs ``command`` in ``cwd`` offline on one thread, with ``env``
    added to the environment; captures its output."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", **env),
        capture_output=True,
        text=True,
    )


def run_python(cwd, *args):
    """Runs ``python *args`` in ``cwd`` offline on one thread."""
    return run_offline(cwd, [sys.executable, *args])


def run_bash(cwd, script, **env):
    """Runs a bash ``script`` in ``cwd`` offline on one thread, with
    ``env`` added to the environment."""
    return run_offline(
        cwd, ["bash", "-c", f"set -euo pipefail; {script}"], **env
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


# The warnings that a Python process started without -W options hides.
HIDDEN_WARNINGS = (
    DeprecationWarning,
    PendingDeprecationWarning,
    ImportWarning,
    ResourceWarning,
)


def cli_in_a_subprocess(*arguments):
    """Runs ``speechbrain-turbo *arguments`` as its own Python process.

    Returns
    -------
    subprocess.CompletedProcess
        Its exit status (``returncode``), ``stdout`` and ``stderr``.
    """
    return run_python(REPO, "-m", "speechbrain_turbo.cli", *arguments)


def cli_in_this_process(*arguments):
    """Runs ``speechbrain-turbo *arguments`` in this process (without the
    seconds of imports of a new one), as it would run in its own.

    What the command writes to stdout and stderr is captured. Like the
    interpreter at exit, a ``SystemExit`` becomes the exit status, its
    message (if any) a line on stderr; the warnings and the log records
    (WARNING and up) that a new Python process would print are written to
    stderr too. Any other exception is raised, as it would have ended the
    process with a traceback.

    Returns
    -------
    subprocess.CompletedProcess
        The exit status (``returncode``), ``stdout`` and ``stderr``, as
        :func:`cli_in_a_subprocess` gives them.
    """
    from speechbrain_turbo.cli import main

    arguments = [str(argument) for argument in arguments]
    stdout, stderr = io.StringIO(), io.StringIO()
    log_to_stderr = logging.StreamHandler(stderr)
    log_to_stderr.setLevel(logging.WARNING)
    logging.getLogger().addHandler(log_to_stderr)
    returncode = 0
    try:
        with (
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
            warnings.catch_warnings(record=True) as shown,
        ):
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for category in HIDDEN_WARNINGS:
                warnings.simplefilter("ignore", category)
            try:
                main(arguments)
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    returncode = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
                    returncode = 1
    finally:
        logging.getLogger().removeHandler(log_to_stderr)
    for warning in shown:
        stderr.write(
            warnings.formatwarning(
                warning.message,
                warning.category,
                warning.filename,
                warning.lineno,
                warning.line,
            )
        )
    return subprocess.CompletedProcess(
        ["speechbrain-turbo", *arguments],
        returncode,
        stdout.getvalue(),
        stderr.getvalue(),
    )


def cli_classify_manifest(model, manifest, output, run=cli_in_this_process):
    """``speechbrain-turbo classify --manifest``'s output rows by ID
    (``run``: :func:`cli_in_this_process` or :func:`cli_in_a_subprocess`).
    """
    result = cli_classify(
        model, "--manifest", manifest, "--output", output, run=run
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output, newline="", encoding="utf-8") as f:
        return {row["ID"]: row for row in csv.DictReader(f)}


def cli_classify(model, *arguments, run=cli_in_this_process):
    """Runs ``speechbrain-turbo classify --model MODEL *arguments``
    (``run``: :func:`cli_in_this_process` or :func:`cli_in_a_subprocess`).
    """
    return run("classify", "--model", str(model), *map(str, arguments))


# The demo recipe run of the tests that use a trained model: with modality
# dropout, so that its test without text means something.
DEMO_RUN = [*TINY, "--modality_dropout=0.3", "--test_without=[text]"]


def train_demo_recipe(corpus, output, *overrides):
    """Runs the demo recipe's ``train.py`` with ``DEMO_RUN``'s settings on
    ``corpus`` into ``output``, with ``overrides`` added.

    Returns
    -------
    subprocess.CompletedProcess
        The run's exit status, stdout and stderr.
    """
    return run_python(
        DEMO_RECIPE,
        "train.py",
        "hparams/demo.yaml",
        f"--data_folder={corpus}",
        f"--output_folder={output}",
        *DEMO_RUN,
        *overrides,
    )


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, tiny_corpus):
    """A finished tiny demo-recipe run (:func:`train_demo_recipe` on
    ``tiny_corpus``): its folder and what it printed (stdout + stderr).
    Tests only read it."""

    def build(folder):
        trained = train_demo_recipe(tiny_corpus, folder / "run")
        (folder / "printed.txt").write_text(trained.stdout + trained.stderr)
        assert trained.returncode == 0, trained.stderr[-3000:]

    folder = built_once(tmp_path_factory, "demo_run", build)
    return folder / "run", (folder / "printed.txt").read_text()


@pytest.fixture(scope="session")
def exported(tmp_path_factory, demo_run):
    """The tiny demo-recipe run of ``demo_run`` and its exported model
    folder.

    Returns the run folder, the model folder, a test manifest
    (``ID,wav,text``) and the screened test entries.
    """
    run, _ = demo_run

    def build(folder):
        result = cli_in_this_process(
            "export", run, folder / "model", "--examples=2"
        )
        assert result.returncode == 0, result.stderr[-3000:]

    folder = built_once(tmp_path_factory, "exported", build)
    test = json.loads((run / "test_screened.json").read_text())
    manifest = tmp_path_factory.mktemp("manifest") / "test.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav", "text"])
        for item_id, entry in test.items():
            writer.writerow([item_id, entry["wav"], entry["text"]])
    return run, folder / "model", manifest, test
