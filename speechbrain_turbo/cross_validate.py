"""Runs a recipe's train.py over folds and seeds, then tabulates.

Each run selects its checkpoint on its validation set only (train.py does);
this collects the test metrics of the selected checkpoints and writes
``results.csv`` and ``results.md`` (one row per run, then mean and standard
deviation) under ``<output_root>/<name>``. Finished runs (those with a
``test_metrics.json``) are not run again, so an interrupted sweep resumes.
With ``--delete_checkpoints`` the checkpoints of each finished run are
deleted (a fine-tuned pretrained model's take hundreds of MB a run; the
metrics, predictions and logs stay).
A recipe exposes it through a small ``cross_validate.py`` that names its
``train.py`` and, if the recipe prepares its own split, its fold key
(``test_session`` for IEMOCAP); the generic recipe (recipes/AudioText)
takes a folder of prepared folds instead (``--manifests``, written by a
corpus preparation such as recipes/EmoDB/turbo/emodb_prepare.py).

Example, Turbo and the baseline on the IEMOCAP demo corpus, test session 5,
3 seeds (from recipes/IEMOCAP/turbo):
    > python cross_validate.py hparams/demo.yaml --name turbo \
        --folds 5 --seeds 1 2 3
    > python cross_validate.py hparams/demo.yaml --name baseline \
        --folds 5 --seeds 1 2 3 -- --turbo_weight=0 --twin_pass=False

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import fcntl
import glob
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from speechbrain.utils.logger import get_logger, setup_logging

from speechbrain_turbo.preparation import SPLITS

logger = get_logger(__name__)

METRICS = ("WA", "UA", "macro_F1")
# The columns of collect's table.
COLUMNS = ("valid_UA", *METRICS, "UA_without_text", "cpu_minutes")


def run_one(
    train_py,
    hparams_file,
    run_folder,
    seed,
    overrides,
    threads,
    delete_checkpoints=False,
):
    """Trains and tests one fold and seed, unless it already finished.

    Arguments
    ---------
    train_py : str
        The recipe's train.py (run from its folder).
    hparams_file : str
        The recipe's hparams file.
    run_folder : str
        Output folder of this run.
    seed : int
        Random seed.
    overrides : list of str
        ``--key=value`` overrides for train.py, those choosing the fold
        included (see :func:`fold_overrides`).
    threads : int
        CPU threads of the run (OMP_NUM_THREADS).
    delete_checkpoints : bool
        Delete the run's checkpoints (``save/CKPT*``) once it has finished.

    Returns
    -------
    dict or None
        The run's ``test_metrics.json``, or None if it failed or another
        process is training it.
    """
    metrics_file = os.path.join(run_folder, "test_metrics.json")
    if not os.path.exists(metrics_file):
        os.makedirs(run_folder, exist_ok=True)
        # Two sweeps sharing a folder must not train the same run at once:
        # the second would resume from the first's checkpoints mid-epoch.
        lock = open(os.path.join(run_folder, ".lock"), "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning(
                "Skipped: %s is being trained by another process", run_folder
            )
            return None
        command = [
            sys.executable,
            train_py,
            hparams_file,
            f"--seed={seed}",
            f"--output_folder={run_folder}",
            *overrides,
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        log_path = os.path.join(run_folder, "stdout.txt")
        with lock:
            # It may have finished in another process since the check above.
            if not os.path.exists(metrics_file):
                with open(log_path, "a", encoding="utf-8") as log:
                    returncode = _run_and_count_cpu(
                        command, os.path.dirname(train_py), env, log, run_folder
                    )
                if returncode != 0:
                    logger.error("Failed: see %s", log_path)
                    return None
    if delete_checkpoints:
        _delete_checkpoints(run_folder)
    with open(metrics_file, encoding="utf-8") as f:
        return json.load(f)


# Per run folder: the CPU seconds of each attempt at the run.
CPU_FILE = "cpu_seconds.txt"


def _run_and_count_cpu(command, cwd, env, log, run_folder):
    """Runs ``command`` to its end and appends the CPU seconds it used (its
    threads and the processes it waited for) to ``CPU_FILE`` in
    ``run_folder``: one line per attempt, so that a run that failed or was
    stopped and then resumed counts every attempt this runner saw end (not
    one cut short by killing the runner itself). Returns its exit code.
    """
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:
        child.kill()
        child.wait()
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    with open(os.path.join(run_folder, CPU_FILE), "a", encoding="utf-8") as f:
        f.write(f"{usage.ru_utime + usage.ru_stime:.3f}\n")
    return child.returncode


def cpu_minutes(run_folder, metrics):
    """A run's CPU minutes: every attempt's, as :func:`run_one` counted them,
    else what the last process reported (``process_cpu_minutes``).

    Arguments
    ---------
    run_folder : str
        The run's output folder.
    metrics : dict
        Its ``test_metrics.json``.

    Returns
    -------
    float or None
    """
    path = os.path.join(run_folder, CPU_FILE)
    if not os.path.exists(path):
        return metrics.get("process_cpu_minutes")
    with open(path, encoding="utf-8") as f:
        return sum(float(line) for line in f if line.strip()) / 60


def _delete_checkpoints(run_folder):
    """Deletes a finished run's checkpoint folders, logging the space freed."""
    freed = 0
    for checkpoint in glob.glob(os.path.join(run_folder, "save", "CKPT*")):
        for parent, _, files in os.walk(checkpoint):
            freed += sum(
                os.path.getsize(os.path.join(parent, f)) for f in files
            )
        shutil.rmtree(checkpoint)
    if freed:
        logger.info(
            "Deleted the checkpoints of %s (%.0f MB)", run_folder, freed / 1e6
        )


def _without_text_UA(run_folder):
    """Test UA of the run's test without transcripts, if it has one."""
    path = os.path.join(run_folder, "test_metrics_without_text.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)["UA"]


def summarise(rows):
    """Mean and sample standard deviation of each metric over the runs.

    Arguments
    ---------
    rows : list of dict
        One dict per finished run, with the keys in ``METRICS``.

    Returns
    -------
    dict
        ``metric -> (mean, std)``; std is 0 for a single run.

    Example
    -------
    >>> s = summarise([{"WA": 0.5, "UA": 0.4, "macro_F1": 0.3}] * 2)
    >>> s["WA"]
    (0.5, 0.0)
    """
    summary = {}
    for key in (*METRICS, "valid_UA", "UA_without_text", "cpu_minutes"):
        values = [r[key] for r in rows if r.get(key) is not None]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[key] = (statistics.mean(values), std)
    return summary


def write_tables(rows, summary, folder, command):
    """Writes results.csv and results.md; returns the Markdown text.

    Arguments
    ---------
    rows : list of dict
        One dict per finished run.
    summary : dict
        Output of :func:`summarise`.
    folder : str
        Where the tables go.
    command : str
        The command line that produced them (written above the table).

    Returns
    -------
    str
        The Markdown table.
    """
    columns = ["fold", "seed", "valid_UA", *METRICS, "UA_without_text"]
    columns += ["cpu_minutes", "epoch", "folder"]
    with open(
        os.path.join(folder, "results.csv"), "w", newline="", encoding="utf-8"
    ) as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Command: `{command}`",
        "",
        "| test fold | seed | valid UA | test WA | test UA | test macro-F1 "
        "| test UA without text | CPU minutes | epoch | run folder |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    scored = ("valid_UA", *METRICS, "UA_without_text", "cpu_minutes")
    for r in rows:
        scores = [r.get(k) for k in scored]
        lines.append(
            f"| {r['fold']} | {r['seed']} | "
            + " | ".join("-" if v is None else f"{v:.4f}" for v in scores)
            + f" | {r['epoch']} | {r['folder']} |"
        )
    lines.append(
        f"| mean ± std ({len(rows)} runs) | | "
        + " | ".join(
            f"{summary[k][0]:.4f} ± {summary[k][1]:.4f}"
            if k in summary
            else "-"
            for k in scored
        )
        + " | | |"
    )
    text = "\n".join(lines) + "\n"
    with open(os.path.join(folder, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def fold_manifests(manifests, fold):
    """The manifests of one prepared fold: ``{split: path}``.

    Arguments
    ---------
    manifests : str
        A folder of prepared folds, ``fold<k>/train.csv``, ``valid.csv`` and
        ``test.csv`` for each fold ``k`` (as the corpus preparations under
        recipes/ write them).
    fold : int
        The test fold.

    Returns
    -------
    dict

    Example
    -------
    >>> fold_manifests("/folds", 2)["valid"]
    '/folds/fold2/valid.csv'
    """
    folder = os.path.join(manifests, f"fold{fold}")
    return {split: os.path.join(folder, f"{split}.csv") for split in SPLITS}


def fold_overrides(fold, fold_key=None, manifests=None):
    """The train.py overrides that choose one test fold.

    Arguments
    ---------
    fold : int
        The test fold.
    fold_key : str, optional
        The hparams key of the test fold, for a recipe that prepares its
        own split (``test_session`` for IEMOCAP).
    manifests : str, optional
        Otherwise, a folder of prepared folds (:func:`fold_manifests`).

    Returns
    -------
    list of str

    Example
    -------
    >>> fold_overrides(5, fold_key="test_session")
    ['--test_session=5']
    >>> fold_overrides(2, manifests="/folds")  # doctest: +NORMALIZE_WHITESPACE
    ['--train_csv=/folds/fold2/train.csv', '--valid_csv=/folds/fold2/valid.csv',
     '--test_csv=/folds/fold2/test.csv']
    """
    if fold_key is not None:
        return [f"--{fold_key}={fold}"]
    return [
        f"--{split}_csv={path}"
        for split, path in fold_manifests(manifests, fold).items()
    ]


def later_overrides_win(overrides):
    """Keeps the last ``--key=value`` of each key, in first-seen order.

    SpeechBrain refuses a key given twice; here a later value (the user's)
    replaces an earlier one (e.g. a corpus' tuned value), and says so.

    Arguments
    ---------
    overrides : list of str
        ``--key=value`` arguments (others are kept as they are).

    Returns
    -------
    list of str

    Example
    -------
    >>> later_overrides_win(["--epochs=6", "--lr=1", "--epochs=1"])
    ['--epochs=1', '--lr=1']
    """
    kept = {}
    for argument in overrides:
        key = argument.split("=", 1)[0] if "=" in argument else argument
        if key in kept and kept[key] != argument:
            logger.info("%s replaces %s", argument, kept[key])
        kept[key] = argument
    return list(kept.values())


def main(train_py, fold_key=None, argv=None):
    """Parses the command line, runs the sweep and writes the tables.

    Arguments
    ---------
    train_py : str
        The recipe's train.py.
    fold_key : str, optional
        The hparams key of the test fold, for a recipe that prepares its own
        split; without it the command line's ``--manifests`` names a folder
        of prepared folds (see :func:`fold_overrides`).
    argv : list of str, optional
        The command line (default: ``sys.argv[1:]``).

    Returns
    -------
    None
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Arguments after -- go to train.py as overrides.",
    )
    parser.add_argument("hparams_file")
    parser.add_argument("--name", required=True, help="configuration name")
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    parser.add_argument("--jobs", type=int, default=1, help="parallel runs")
    parser.add_argument("--threads", type=int, default=1, help="per run")
    parser.add_argument("--output_root", default="results/cross_validation")
    parser.add_argument(
        "--corpus_overrides",
        default="",
        help="overrides of the corpus (one string), before those after --, "
        "which win",
    )
    if fold_key is None:
        parser.add_argument(
            "--manifests",
            required=True,
            help="folder of prepared folds: fold<k>/{train,valid,test}.csv",
        )
    parser.add_argument(
        "--delete_checkpoints",
        action="store_true",
        help="delete each finished run's checkpoints (keeps its results)",
    )
    setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    command = "python cross_validate.py " + " ".join(argv)
    overrides = []
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    overrides = shlex.split(args.corpus_overrides) + overrides
    manifests = None
    if fold_key is None:
        manifests = os.path.abspath(args.manifests)
        for fold in args.folds:
            for path in fold_manifests(manifests, fold).values():
                if not os.path.isfile(path):
                    parser.error(
                        f"{path} does not exist: --manifests must name the "
                        "folder a corpus preparation wrote its folds to "
                        "(fold<k>/train.csv, valid.csv, test.csv)"
                    )

    folder = os.path.abspath(os.path.join(args.output_root, args.name))
    hparams_file = os.path.abspath(args.hparams_file)
    # Seed by seed: a sweep stopped early has every fold of its first seeds.
    plan = [(fold, seed) for seed in args.seeds for fold in args.folds]

    def launch(item):
        """Runs one (fold, seed) of the plan; returns it with its metrics."""
        fold, seed = item
        run_folder = os.path.join(folder, f"fold{fold}_seed{seed}")
        metrics = run_one(
            train_py,
            hparams_file,
            run_folder,
            seed,
            later_overrides_win(
                fold_overrides(fold, fold_key, manifests) + overrides
            ),
            args.threads,
            args.delete_checkpoints,
        )
        return fold, seed, run_folder, metrics

    # The first run goes alone: it may make a shared corpus (the demo's).
    results = [launch(plan[0])]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results += list(pool.map(launch, plan[1:]))

    rows = [
        {
            "fold": fold,
            "seed": seed,
            "valid_UA": m["selected_on_valid"].get("UA"),
            **{k: m[k] for k in METRICS},
            "UA_without_text": _without_text_UA(run_folder),
            "cpu_minutes": cpu_minutes(run_folder, m),
            "epoch": m["epoch"],
            "folder": os.path.relpath(run_folder, folder),
        }
        for fold, seed, run_folder, m in results
        if m is not None
    ]
    failed = len(results) - len(rows)
    if rows:
        table = write_tables(rows, summarise(rows), folder, command)
        logger.info("The runs in %s:\n%s", folder, table)
    if failed:
        logger.error(
            "%d of %d runs failed or were skipped", failed, len(results)
        )
        sys.exit(1)


def percent(summary, key):
    """Formats one metric of :func:`cross_validate.summarise` in percent.

    Arguments
    ---------
    summary : dict
        ``metric -> (mean, std)``.
    key : str
        The metric.

    Returns
    -------
    str
        e.g. ``"52.3 ± 1.2"``, or ``"-"`` when no run has the metric.

    Example
    -------
    >>> percent({"UA": (0.55, 0.0707)}, "UA")
    '55.0 ± 7.1'
    >>> percent({}, "UA")
    '-'
    """
    if key not in summary:
        return "-"
    mean, std = summary[key]
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def collect(root, paired_with=None, paired_metrics=("UA",)):
    """Gathers the ``results.csv`` of every configuration (sub-folder) of a
    sweep folder into one Markdown table, ``<root>/summary.md``: mean ± std
    over runs of the selected checkpoints' validation UA, the test metrics
    (percent) and the CPU minutes per run.

    With ``paired_with`` (a configuration's name), a last column per metric
    of ``paired_metrics`` gives each configuration's test metric minus that
    configuration's, run by run (same fold and seed): mean ± std of the
    differences and how many of them are positive. Runs of one fold share
    its test speakers, so paired differences are far less noisy than a
    comparison of the two means.

    Arguments
    ---------
    root : str
        Folder holding one sub-folder per configuration.
    paired_with : str, optional
        The reference configuration of the paired columns.
    paired_metrics : sequence of str
        The metrics compared in pairs (``UA``, ``WA``, ``macro_F1``).

    Returns
    -------
    str
        The table.
    """
    tables = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "results.csv")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                tables[name] = list(csv.DictReader(f))
    if paired_with is not None and paired_with not in tables:
        raise ValueError(
            f"{root} has no configuration {paired_with!r} to pair with "
            f"(it has {sorted(tables)})"
        )
    header = (
        "| configuration | runs | valid UA | test WA | test UA "
        "| test macro-F1 | test UA without text | CPU minutes per run |"
    )
    names = {"UA": "UA", "WA": "WA", "macro_F1": "macro-F1"}
    if paired_with is not None:
        for metric in paired_metrics:
            header += f" test {names[metric]} − {paired_with}, paired |"
    lines = [header, "|---" * header.count(" |") + "|"]
    for name, rows in tables.items():
        summary = summarise(
            [{k: float(r[k]) for k in COLUMNS if r.get(k)} for r in rows]
        )
        cells = [percent(summary, key) for key in COLUMNS[:-1]]
        if "cpu_minutes" in summary:
            cells.append("{:.1f} ± {:.1f}".format(*summary["cpu_minutes"]))
        else:
            cells.append("-")
        if paired_with is not None:
            for metric in paired_metrics:
                cells.append(_paired(rows, tables[paired_with], metric))
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(root, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def _paired(rows, reference, metric="UA"):
    """Mean ± std of the differences in a test metric of the runs both
    configurations have (same fold and seed), in points, and how many are
    positive.
    """
    theirs = {(r["fold"], r["seed"]): float(r[metric]) for r in reference}
    differences = [
        100 * (float(r[metric]) - theirs[(r["fold"], r["seed"])])
        for r in rows
        if (r["fold"], r["seed"]) in theirs
    ]
    if not differences:
        return "-"
    std = statistics.stdev(differences) if len(differences) > 1 else 0.0
    ahead = sum(d > 0 for d in differences)
    return (
        f"{statistics.mean(differences):+.1f} ± {std:.1f} "
        f"({ahead} of {len(differences)} ahead)"
    )


if __name__ == "__main__":
    # python -m speechbrain_turbo.cross_validate ROOT [--paired_with NAME]
    #     [--paired_metrics UA macro_F1]
    cli = argparse.ArgumentParser(description=collect.__doc__.split("\n")[0])
    cli.add_argument("root")
    cli.add_argument("--paired_with", default=None)
    cli.add_argument(
        "--paired_metrics", nargs="+", default=["UA"], choices=METRICS
    )
    options = cli.parse_args()
    setup_logging()
    table = collect(options.root, options.paired_with, options.paired_metrics)
    logger.info("%s:\n%s", os.path.join(options.root, "summary.md"), table)
