#!/usr/bin/env python3
"""Fixed-size vs duration-sized training batches on utterances whose
durations follow IEMOCAP's, and evaluation with 1 vs 2 processes.

A benchmark, not a test. The corpus: the demo corpus (synthetic speech in
IEMOCAP's layout, prepared by the IEMOCAP recipe's ``prepare_iemocap``),
each utterance tiled or cut to a duration drawn from a log-normal with
IEMOCAP's mean (4.5 s): ``sigma = 0.65``, so that the median is 3.6 s and
about 1.5 % of the utterances last over 15 s, clipped to 0.6-30 s. The
drawn durations stand in for IEMOCAP's, whose distribution is not shipped
here; the summary states the statistics of the drawn set.

For Turbo and its cross-entropy baseline, the AudioText recipe
(``hparams/small.yaml``) trains with ``batch_size`` utterances per batch,
then with duration-sized batches of the same mean size: the smallest
``max_batch_length`` (in 1 s steps) whose batches are no more than the
fixed batches, so that both take as many optimizer steps per epoch.
Reported per run: mean epoch time and padding fraction (the recipe's own
``history.jsonl``), test WA and UA. At the end a copy of the first run's
model scores every utterance of the corpus (train, valid and test: a set
large enough that the processes' fixed costs do not hide the sharding; the
metrics of this pass are not reported): in 1 process, in 2 (``torchrun``,
gloo, each with the runs' threads) and in 1 process with twice the threads
(the same cores as 2 processes). Reported from ``test_metrics.json``:
``scoring_seconds`` (loading, scoring and gathering every share: the part
sharding divides) and ``test_seconds`` (the whole test stage, the main
process's reports included). ``results.json`` and ``results.md`` are
rewritten after every run.

    > python bench/duration_batching.py --report bench/measurements/batching

Arguments after ``--`` go to every run of ``train.py`` as overrides.

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

import numpy as np
from hyperpyyaml import load_hyperpyyaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "AudioText", "turbo")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "recipes", "IEMOCAP", "turbo"))

from iemocap_prepare import prepare_iemocap  # noqa: E402
from speechbrain.dataio import audio_io  # noqa: E402

from speechbrain_turbo.dataio import load_audio  # noqa: E402
from speechbrain_turbo.demo import synthesize_corpus  # noqa: E402

SAMPLE_RATE = 16000
# Log-normal durations with IEMOCAP's mean utterance duration.
MEAN_SECONDS = 4.5
SIGMA = 0.65
SHORTEST, LONGEST = 0.6, 30.0
CONFIGS = {
    "turbo": [],
    "baseline": ["--turbo_weight=0", "--twin_pass=False"],
}
# Evaluation runs: processes, and threads per process in units of the
# training runs' threads (the last: one process on the cores of two).
EVALUATIONS = ((1, 1), (2, 1), (1, 2))


def draw_durations(count, seed):
    """Durations (s) from the log-normal described in the module docstring.

    Arguments
    ---------
    count : int
        How many.
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray
        The durations, clipped to [0.6, 30] s.

    Example
    -------
    >>> durations = draw_durations(20000, seed=0)
    >>> bool(4.3 < durations.mean() < 4.7)
    True
    """
    mu = np.log(MEAN_SECONDS) - SIGMA**2 / 2
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mu, SIGMA, count), SHORTEST, LONGEST)


def fit_to_duration(waveform, seconds):
    """The waveform tiled (repeated) or cut to ``seconds``.

    Arguments
    ---------
    waveform : torch.Tensor
        ``[samples]`` at 16 kHz.
    seconds : float
        The target duration.

    Returns
    -------
    torch.Tensor
        ``[round(seconds * 16000)]`` samples.

    Example
    -------
    >>> import torch
    >>> fit_to_duration(torch.arange(3.0), 5 / SAMPLE_RATE).tolist()
    [0.0, 1.0, 2.0, 0.0, 1.0]
    """
    samples = int(round(seconds * SAMPLE_RATE))
    repeats = -(-samples // waveform.shape[0])
    return waveform.repeat(repeats)[:samples]


def make_corpus(work, utterances_per_speaker, seed):
    """Writes the IEMOCAP-like corpus and its CSV manifests.

    Arguments
    ---------
    work : str
        Scratch folder.
    utterances_per_speaker : int
        Size of the demo corpus drawn from.
    seed : int
        Seed of the durations.

    Returns
    -------
    dict
        ``train``/``valid``/``test``/``all`` -> CSV path (``all``: every
        split), and ``durations`` -> the training durations.
    """
    corpus = os.path.join(work, "corpus")
    synthesize_corpus(corpus, utterances_per_speaker=utterances_per_speaker)
    prep = os.path.join(work, "prep")
    prepare_iemocap(corpus, prep, test_session=5)
    audio_folder = os.path.join(work, "iemocap_like")
    os.makedirs(audio_folder, exist_ok=True)
    manifests, everything = {}, []
    for index, split in enumerate(("train", "valid", "test")):
        with open(os.path.join(prep, f"{split}.json"), encoding="utf-8") as f:
            entries = json.load(f)
        durations = draw_durations(len(entries), seed + index)
        rows = []
        for (item_id, entry), seconds in zip(
            sorted(entries.items()), durations
        ):
            wav = entry["wav"].replace("{data_root}", corpus)
            path = os.path.join(audio_folder, f"{item_id}.wav")
            if not os.path.exists(path):
                waveform = load_audio(wav, SAMPLE_RATE)
                audio_io.save(
                    path, fit_to_duration(waveform, seconds), SAMPLE_RATE
                )
            rows.append([item_id, path, entry["text"], entry["emo"], seconds])
        manifests[split] = os.path.join(work, f"{split}.csv")
        with open(manifests[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["ID", "wav", "text", "label", "duration"])
            writer.writerows(rows)
        if split == "train":
            manifests["durations"] = durations
        everything += rows
    # Every split together: the set the evaluation timing scores.
    manifests["all"] = os.path.join(work, "all.csv")
    with open(manifests["all"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav", "text", "label", "duration"])
        writer.writerows(everything)
    return manifests


def equal_step_budget(durations, steps, seed):
    """The smallest whole ``max_batch_length`` (seconds) whose
    duration-sized batches of ``durations`` number at most ``steps``.

    Arguments
    ---------
    durations : sequence of float
        The training durations.
    steps : int
        Batches per epoch of the fixed-size batches.
    seed : int
        The sampler's seed.

    Returns
    -------
    int
        The budget, in seconds.

    Example
    -------
    >>> equal_step_budget([1.0] * 8, steps=2, seed=1)
    4
    """
    from speechbrain.dataio.dataset import DynamicItemDataset

    from speechbrain_turbo.batching import train_loader_options

    dataset = DynamicItemDataset(
        {f"u{i}": {"duration": float(d)} for i, d in enumerate(durations)}
    )
    # The recipe's sampler options (the budget aside), as its file sets them.
    with open(
        os.path.join(RECIPE, "hparams", "small.yaml"), encoding="utf-8"
    ) as f:
        block = re.search(
            r"^dynamic_batch_sampler:\n(?:    .*\n)+", f.read(), re.M
        ).group(0)
    sampler = load_hyperpyyaml("max_batch_length: 1\n" + block)
    sampler = dict(sampler["dynamic_batch_sampler"])
    budget = int(np.ceil(max(durations)))
    # Each bucket ends an epoch with a partial batch: past a budget that
    # holds the whole set, the count cannot fall.
    while budget <= sum(durations):
        hparams = {
            "dataloader_options": {},
            "dynamic_batching": True,
            "dynamic_batch_sampler": {**sampler, "max_batch_length": budget},
            "seed": seed,
        }
        batches = train_loader_options(hparams, dataset)["batch_sampler"]
        if len(batches) <= steps:
            return budget
        budget += 1
    raise ValueError(
        f"duration-sized batches of these {len(durations)} utterances cannot "
        f"be as few as {steps} per epoch with the recipe's buckets: use more "
        "utterances (--utterances_per_speaker) or a smaller --batch_size"
    )


def recipe_command(manifests, output, overrides):
    """The AudioText recipe's command line."""
    return [
        "train.py",
        "hparams/small.yaml",
        f"--train_csv={manifests['train']}",
        f"--valid_csv={manifests['valid']}",
        f"--test_csv={manifests['test']}",
        f"--output_folder={output}",
        *overrides,
    ]


def run(command, threads, log_path, processes=1):
    """Runs a recipe command (under torchrun for 2+ processes)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    launcher = [sys.executable]
    if processes > 1:
        launcher += [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
        ]
        command = [*command, "--distributed_backend=gloo"]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        done = subprocess.run(
            [*launcher, *command], cwd=RECIPE, env=env, stdout=log, stderr=log
        )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: see {log_path}")


def read_run(output):
    """Epoch time, padding and test metrics of a finished run."""
    with open(os.path.join(output, "history.jsonl"), encoding="utf-8") as f:
        epochs = [json.loads(line) for line in f]
    with open(os.path.join(output, "test_metrics.json"), encoding="utf-8") as f:
        test = json.load(f)
    train = [epoch["train"] for epoch in epochs]
    return {
        "epoch_seconds": statistics.mean(e["time_s"] for e in train),
        "padding": statistics.mean(e["padding"] for e in train),
        "test_WA": test["WA"],
        "test_UA": test["UA"],
        "test_seconds": test["test_seconds"],
    }


def write_report(folder, meta, records, evaluation):
    """``results.json`` and a Markdown table, ``results.md``."""
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(
            {"meta": meta, "runs": records, "evaluation": evaluation},
            f,
            indent=2,
        )
    lines = [
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {meta['machine']}; {meta['threads']} thread(s) per "
        f"process. Training durations: mean {meta['mean_seconds']:.2f} s, "
        f"median {meta['median_seconds']:.2f} s, max "
        f"{meta['max_seconds']:.1f} s ({meta['train_utterances']} "
        f"utterances). Fixed batches: {meta['batch_size']} utterances; "
        f"duration-sized: at most {meta['max_batch_length']} s of audio, "
        f"both {meta['steps_per_epoch']} steps per epoch at most.",
        "",
        "| objective | batches | seed | epoch s | padding | test WA "
        "| test UA |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['objective']} | {r['batching']} | {r['seed']} "
            f"| {r['epoch_seconds']:.1f} | {100 * r['padding']:.1f} % "
            f"| {100 * r['test_WA']:.1f} | {100 * r['test_UA']:.1f} |"
        )
    for objective in CONFIGS:
        fixed = [
            r["epoch_seconds"]
            for r in records
            if (r["objective"], r["batching"]) == (objective, "fixed")
        ]
        sized = [
            r["epoch_seconds"]
            for r in records
            if (r["objective"], r["batching"]) == (objective, "duration")
        ]
        if fixed and sized:
            lines.append(
                f"\n{objective}: duration-sized epochs "
                f"{statistics.mean(fixed) / statistics.mean(sized):.2f}x "
                "faster than fixed batches."
            )
    if evaluation:
        lines += [
            "",
            f"Scoring all {meta['all_utterances']} utterances with the first "
            "run's model:",
            "",
            "| processes x threads | scoring s | test stage s "
            "| scoring / 1 process |",
            "|---|---|---|---|",
        ]
        one = next(iter(evaluation.values()))["scoring_seconds"]
        for name, e in evaluation.items():
            lines.append(
                f"| {name} | {e['scoring_seconds']:.2f} "
                f"| {e['test_seconds']:.2f} "
                f"| {e['scoring_seconds'] / one:.2f} |"
            )
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    """Builds the corpus, runs every configuration, writes the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="results folder")
    parser.add_argument("--work", default=None, help="scratch folder")
    parser.add_argument("--utterances_per_speaker", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:  # the rest: overrides for every run
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    report = os.path.abspath(args.report)
    work = os.path.abspath(args.work or os.path.join(report, "work"))
    os.makedirs(work, exist_ok=True)
    os.makedirs(report, exist_ok=True)
    manifests = make_corpus(work, args.utterances_per_speaker, seed=0)
    durations = manifests.pop("durations")
    with open(manifests["test"], encoding="utf-8") as f:
        test_utterances = sum(1 for _ in f) - 1
    with open(manifests["all"], encoding="utf-8") as f:
        all_utterances = sum(1 for _ in f) - 1
    steps = -(-len(durations) // args.batch_size)
    budget = equal_step_budget(durations, steps, seed=args.seeds[0])
    meta = {
        "command": "python bench/duration_batching.py "
        + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPU cores",
        "threads": args.threads,
        "train_utterances": len(durations),
        "test_utterances": test_utterances,
        "all_utterances": all_utterances,
        "mean_seconds": float(np.mean(durations)),
        "median_seconds": float(np.median(durations)),
        "max_seconds": float(np.max(durations)),
        "max_batch_length": budget,
        "steps_per_epoch": steps,
        "batch_size": args.batch_size,
    }
    batchings = {
        "fixed": [],
        "duration": [
            "--dynamic_batching=True",
            f"--max_batch_length={budget}",
        ],
    }
    records, evaluation, first = [], {}, None
    for seed in args.seeds:
        for objective in args.configs:
            for batching, options in batchings.items():
                name = f"{objective}_{batching}_seed{seed}"
                output = os.path.join(work, "runs", name)
                overrides = [
                    f"--seed={seed}",
                    f"--number_of_epochs={args.epochs}",
                    f"--batch_size={args.batch_size}",
                    *CONFIGS[objective],
                    *options,
                    *extra,
                ]
                command = recipe_command(manifests, output, overrides)
                run(command, args.threads, output + ".log")
                records.append(
                    {
                        "objective": objective,
                        "batching": batching,
                        "seed": seed,
                        **read_run(output),
                    }
                )
                write_report(report, meta, records, evaluation)
                first = first or (overrides, output)
    # A copy of the first run's model scores the whole corpus. The copy is
    # a new run folder for the recipe (its test set differs), so the first
    # run's record of its settings stays behind.
    overrides, output = first
    copy = os.path.join(work, "runs", "evaluation")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(
        output, copy, ignore=shutil.ignore_patterns("run_identity.json")
    )
    command = recipe_command(
        {**manifests, "test": manifests["all"]}, copy, overrides
    )
    for processes, times in EVALUATIONS:
        threads = times * args.threads
        name = f"{processes} x {threads}"
        log = f"{copy}.{processes}x{threads}.log"
        run(command, threads, log, processes=processes)
        with open(
            os.path.join(copy, "test_metrics.json"), encoding="utf-8"
        ) as f:
            test = json.load(f)
        evaluation[name] = {
            key: test[key] for key in ("scoring_seconds", "test_seconds")
        }
        write_report(report, meta, records, evaluation)


if __name__ == "__main__":
    main()
