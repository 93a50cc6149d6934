#!/usr/bin/env python3
"""SpeechBrain's own IEMOCAP emotion recipe (ECAPA-TDNN from scratch, audio
only), run unchanged on one of our CSV splits: the from-scratch anchor that
the real-corpus recipes are compared with.

The upstream recipe reads JSON manifests (``wav``, ``length``, ``emo``) of
16 kHz audio and sizes its classifier with ``out_n_neurons``. This script
writes 16 kHz mono copies of the split's audio and those manifests, runs
the recipe's ``train.py hparams/train.yaml`` with only the data options
and the class count overridden, then scores its ``predictions.csv`` (WA and
UA) and records the CPU time of the run.

    > python bench/upstream_ecapa.py \
        --recipe_dir /path/to/speechbrain/recipes/IEMOCAP/emotion_recognition \
        --manifests results/emodb/prep --data_folder /path/to/EmoDB \
        --output results/upstream_ecapa --seed 1

SpeechBrain is not vendored here: point ``--recipe_dir`` at a checkout of
its repository (https://github.com/speechbrain/speechbrain).

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from speechbrain.dataio import audio_io

from speechbrain_turbo.dataio import load_audio
from speechbrain_turbo.metrics import classification_metrics


def write_upstream_manifests(manifests, data_folder, output, sample_rate):
    """16 kHz copies of the audio and upstream-format JSON manifests.

    Arguments
    ---------
    manifests : str
        Folder with our ``train.csv``, ``valid.csv`` and ``test.csv``.
    data_folder : str
        Replaces ``$data_root`` in their ``wav`` column.
    output : str
        Where ``wav/`` and the ``<split>.json`` files are written.
    sample_rate : int
        The rate of the copies (the upstream recipe expects 16 kHz).

    Returns
    -------
    dict
        split -> path of its JSON manifest.
    """
    wav_folder = os.path.join(output, "wav")
    os.makedirs(wav_folder, exist_ok=True)
    paths = {}
    for split in ("train", "valid", "test"):
        entries = {}
        with open(
            os.path.join(manifests, f"{split}.csv"), encoding="utf-8"
        ) as f:
            for row in csv.DictReader(f):
                source = row["wav"].replace("$data_root", data_folder)
                target = os.path.join(wav_folder, row["ID"] + ".wav")
                if not os.path.exists(target):
                    signal = load_audio(source, sample_rate)
                    audio_io.save(target, signal.unsqueeze(0), sample_rate)
                entries[row["ID"]] = {
                    "wav": target,
                    "length": audio_io.info(target).num_frames / sample_rate,
                    "emo": row["label"],
                }
        paths[split] = os.path.join(output, f"{split}.json")
        with open(paths[split], "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=2)
    return paths


def score_predictions(run_folder):
    """WA and UA of the upstream recipe's test predictions.

    Arguments
    ---------
    run_folder : str
        The recipe's output folder (``predictions.csv`` and
        ``save/label_encoder.txt``).

    Returns
    -------
    dict
        ``WA``, ``UA``, ``macro_F1`` and the number of test utterances.
    """
    with open(
        os.path.join(run_folder, "predictions.csv"), encoding="utf-8"
    ) as f:
        rows = list(csv.DictReader(f))
    predicted = [int(r["prediction"]) for r in rows]
    target = [int(r["true_value"]) for r in rows]
    with open(
        os.path.join(run_folder, "save", "label_encoder.txt"), encoding="utf-8"
    ) as f:
        # Label lines come before the "=====" line (then the encoder's
        # own settings, e.g. 'starting_index').
        lines = f.read().split("\n=")[0].splitlines()
    num_classes = sum(1 for line in lines if line.startswith("'"))
    stats = classification_metrics(target, predicted, num_classes)
    return {
        "classes": num_classes,
        "WA": stats["WA"],
        "UA": stats["UA"],
        "macro_F1": stats["macro_F1"],
        "test_utterances": len(rows),
    }


def summarise_runs(output):
    """Mean ± sample std over the finished seeds; writes ``summary.md``.

    Arguments
    ---------
    output : str
        The ``--output`` folder (one ``seed<N>/result.json`` per run).

    Returns
    -------
    str
        The Markdown line of the table.
    """
    results = []
    for name in sorted(os.listdir(output)):
        path = os.path.join(output, name, "result.json")
        if name.startswith("seed") and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                results.append(json.load(f))
    cells = []
    for key, scale in (("UA", 100), ("WA", 100), ("cpu_minutes", 1)):
        values = [scale * r[key] for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.mean(values):.1f} ± {spread:.1f}")
    line = (
        f"| upstream ECAPA-TDNN | {len(results)} | " + " | ".join(cells) + " |"
    )
    text = "| model | runs | test UA | test WA | CPU minutes per run |\n"
    text += "|---|---|---|---|---|\n" + line + "\n"
    with open(os.path.join(output, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    return text


def main():
    """Prepares the data, runs the upstream recipe, writes ``result.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe_dir", required=True)
    parser.add_argument("--manifests", required=True)
    parser.add_argument("--data_folder", default="")
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=1968)
    parser.add_argument("--sample_rate", type=int, default=16000)
    args = parser.parse_args()

    output = os.path.abspath(args.output)
    data = write_upstream_manifests(
        args.manifests,
        args.data_folder,
        os.path.join(output, "data"),
        args.sample_rate,
    )
    labels = set()
    with open(data["train"], encoding="utf-8") as f:
        labels = {entry["emo"] for entry in json.load(f).values()}
    run_folder = os.path.join(output, f"seed{args.seed}")
    command = [
        sys.executable,
        "train.py",
        "hparams/train.yaml",
        f"--data_folder={os.path.dirname(data['train'])}",
        "--skip_prep=True",
        f"--train_annotation={data['train']}",
        f"--valid_annotation={data['valid']}",
        f"--test_annotation={data['test']}",
        f"--out_n_neurons={len(labels)}",
        f"--output_folder={run_folder}",
        f"--seed={args.seed}",
    ]
    start_wall = time.time()
    start_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=args.recipe_dir, check=True)
    end_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "command": " ".join(command),
        "seed": args.seed,
        "wall_minutes": (time.time() - start_wall) / 60,
        "cpu_minutes": (
            end_cpu.ru_utime
            + end_cpu.ru_stime
            - start_cpu.ru_utime
            - start_cpu.ru_stime
        )
        / 60,
        "torch_threads": torch.get_num_threads(),
        **score_predictions(run_folder),
    }
    with open(
        os.path.join(run_folder, "result.json"), "w", encoding="utf-8"
    ) as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(summarise_runs(output))


if __name__ == "__main__":
    main()
