#!/usr/bin/env python3
"""Where the quick-start demo spends its time.

A benchmark, not a test. Runs the demo command (``train.py
hparams/demo.yaml`` of the IEMOCAP recipe) in this process under
``cProfile``, with a new corpus folder (so that its synthesis is counted)
and a new output folder, and reports the wall time of each phase:
imports, corpus synthesis, preparation, screening and tokenizer,
training epochs (and within them data loading, feature extraction, the
training step, checkpoints), validation, the two test passes (with and
without text), reports and plots. Feature extraction (``Fbank``) is summed
over every stage. ``profile.md``, ``profile.json`` and the raw
``profile.pstats`` go to ``--report``.

    > python bench/demo_profile.py --report bench/measurements/demo_profile
    > python bench/demo_profile.py --report DIR -- --dynamic_batching=False

Arguments after ``--`` go to ``train.py`` as overrides. The profiler adds
a little to Python-heavy phases; the total is also reported without it
(``--no-profile``: wall time only).

Authors
 * speechbrain-turbo contributors
"""

import argparse
import cProfile
import json
import os
import pstats
import runpy
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "IEMOCAP", "turbo")

# (phase, [(file name ending, function name), ...]): cumulative times.
PHASES = [
    (
        "imports (some inside the phases below)",
        [("<frozen importlib._bootstrap>", "_find_and_load")],
    ),
    ("corpus synthesis", [("demo/corpus.py", "synthesize_corpus")]),
    ("preparation", [("iemocap_prepare.py", "prepare_iemocap")]),
    (
        "screening, datasets and tokenizer",
        [("speechbrain_turbo/dataio.py", "datasets_from_hparams")],
    ),
    ("training epochs", [("speechbrain/core.py", "_fit_train")]),
    (
        "  data loading (audio reading, tokenising, padding)",
        [("torch/utils/data/dataloader.py", "__next__")],
    ),
    (
        "  training steps",
        [("speechbrain_turbo/brain_workarounds.py", "fit_batch")],
    ),
    (
        "  checkpoints",
        [("speechbrain/utils/checkpoints.py", "save_and_keep_only")],
    ),
    (
        "optimizer set-up (its first use loads torch's compiler)",
        [("speechbrain_turbo/optimizers.py", "init_optimizers")],
    ),
    ("validation", [("speechbrain/core.py", "_fit_valid")]),
    ("test, both passes", [("speechbrain/core.py", "evaluate")]),
    (
        "plots (training curves, confusion matrices)",
        [
            ("speechbrain_turbo/reports.py", "plot_training_curves"),
            ("speechbrain_turbo/reports.py", "write_confusion_matrix"),
        ],
    ),
    (
        "feature extraction (Fbank, every stage)",
        [("speechbrain/lobes/features.py", "forward")],
    ),
]


def cumulative(stats, targets):
    """Seconds spent in (and under) the functions ``targets``.

    Arguments
    ---------
    stats : pstats.Stats
        The profile.
    targets : list of tuple
        ``(file name ending, function name)`` pairs.

    Returns
    -------
    float
        The sum of their cumulative times.
    """
    total = 0.0
    for (filename, _, name), row in stats.stats.items():
        for ending, wanted in targets:
            if name == wanted and filename.replace(os.sep, "/").endswith(
                ending
            ):
                total += row[3]
    return total


def main(argv=None):
    """Runs the demo once and writes the phase table.

    Arguments
    ---------
    argv : list of str or None
        Command-line arguments (None: ``sys.argv[1:]``).

    Returns
    -------
    dict
        The measured phases (seconds) and the run's settings.
    """
    argv = sys.argv[1:] if argv is None else argv
    overrides = []
    if "--" in argv:
        overrides = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="output folder")
    parser.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="wall time only, without cProfile",
    )
    args = parser.parse_args(argv)
    report = os.path.abspath(args.report)
    run = os.path.join(report, "run")
    corpus = os.path.join(report, "corpus")
    for folder in (run, corpus):
        shutil.rmtree(folder, ignore_errors=True)

    command = [
        "train.py",
        "hparams/demo.yaml",
        f"--data_folder={corpus}",
        f"--output_folder={run}",
        *overrides,
    ]
    os.chdir(RECIPE)
    sys.path.insert(0, RECIPE)
    sys.argv = command
    profiler = cProfile.Profile() if args.profile else None
    began = time.perf_counter()
    if profiler:
        profiler.enable()
    runpy.run_path("train.py", run_name="__main__")
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - began

    with open(os.path.join(run, "test_metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    result = {
        "command": "python " + " ".join(command),
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
        "wall_seconds": wall,
        "test_UA": metrics["UA"],
        "test_WA": metrics["WA"],
        "phases": {},
    }
    if profiler:
        profiler.dump_stats(os.path.join(report, "profile.pstats"))
        stats = pstats.Stats(profiler)
        for phase, targets in PHASES:
            result["phases"][phase] = cumulative(stats, targets)
    with open(os.path.join(report, "profile.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        f"`{result['command']}` ({result['threads']} threads): "
        f"{wall:.1f} s in all, test UA {metrics['UA']:.4f}.",
        "",
        "| phase | seconds | share |",
        "|---|---|---|",
    ]
    for phase, seconds in result["phases"].items():
        lines.append(f"| {phase} | {seconds:.1f} | {seconds / wall:.0%} |")
    with open(os.path.join(report, "profile.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    main()
