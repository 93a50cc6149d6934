#!/usr/bin/env python3
"""Time and peak memory per training epoch of the IEMOCAP recipe with
full-size pretrained-architecture encoders: Turbo next to the CE baseline.

A benchmark, not a test. It synthesises the demo corpus, saves randomly
initialised encoders with the architecture of the recipe's defaults (WavLM
Base+ and RoBERTa-base; nothing is downloaded), then runs
``recipes/IEMOCAP/turbo/train.py hparams/turbo.yaml`` for each configuration
and precision, one after the other on the same machine. The epoch time and
peak GPU memory come from the recipe's own log (``history.jsonl``); accuracy
is meaningless with random weights and is not reported. ``results.json`` and
``results.md`` are rewritten after every run.

    > python bench/recipe_epoch_time.py --device cuda:0 --report results/bench

Authors
 * speechbrain-turbo contributors
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "IEMOCAP", "turbo")
sys.path.insert(0, REPO)

from speechbrain_turbo.demo import synthesize_corpus  # noqa: E402
from speechbrain_turbo.random_hf_models import (  # noqa: E402
    save_random_speech_model,
    save_random_text_model,
)

CONFIGS = {
    "turbo": [],
    "baseline": ["--turbo_weight=0", "--twin_pass=False"],
}
TINY_HEADS = [
    "--fusion_dim=16",
    "--projection_dim=8",
]


def parse_args():
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", required=True, help="results folder")
    parser.add_argument("--work", default=None, help="scratch folder")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument(
        "--dynamic_batching",
        choices=["True", "False"],
        default="False",
        help="duration-sized batches (turbo.yaml's default) or fixed ones",
    )
    parser.add_argument("--audio_family", default="wavlm")
    parser.add_argument("--text_family", default="roberta")
    parser.add_argument(
        "--size", default="base", help="base, or tiny for a smoke test"
    )
    parser.add_argument("--utterances_per_speaker", type=int, default=150)
    parser.add_argument(
        "--deadline_s",
        type=float,
        default=None,
        help="start no run after this many seconds; stop one running past it",
    )
    return parser.parse_args()


def train_set_size(output_folder):
    """Utterances and hours of audio in the run's training manifest."""
    with open(os.path.join(output_folder, "train.json"), encoding="utf-8") as f:
        train = json.load(f)
    hours = sum(u["duration"] for u in train.values()) / 3600
    return len(train), hours


def run_one(args, name, overrides, paths, deadline):
    """Runs the recipe once; returns its per-epoch costs."""
    output = os.path.join(paths["work"], "runs", name)
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable,
        "train.py",
        "hparams/turbo.yaml",
        f"--data_folder={paths['corpus']}",
        f"--audio_hub={paths['audio']}",
        f"--text_hub={paths['text']}",
        f"--pretrained_folder={paths['work']}/pretrained",
        f"--output_folder={output}",
        f"--number_of_epochs={args.epochs}",
        f"--batch_size={args.batch_size}",
        # batch_size utterances per batch (the figures' unit), unless asked.
        f"--dynamic_batching={args.dynamic_batching}",
        f"--num_workers={args.num_workers}",
        f"--device={args.device}",
        *(TINY_HEADS if args.size == "tiny" else []),
        *overrides,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    timeout = None if deadline is None else max(deadline - time.time(), 1)
    start = time.time()
    try:
        result = subprocess.run(
            command,
            cwd=RECIPE,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        log, returncode = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as error:
        log, returncode = f"{error}", "timeout"
    record = {
        "name": name,
        "command": " ".join(command[1:]),
        "returncode": returncode,
        "wall_s": round(time.time() - start, 1),
    }
    history_path = os.path.join(output, "history.jsonl")
    if returncode != 0 or not os.path.exists(history_path):
        record["log_tail"] = log[-3000:]
        return record
    with open(history_path, encoding="utf-8") as f:
        history = [json.loads(line) for line in f]
    record["epochs"] = [
        {
            "epoch": h["epoch"],
            "time_s": round(h["train"]["time_s"], 2),
            "peak_GiB": (
                round(h["train"]["peak_GiB"], 2)
                if "peak_GiB" in h["train"]
                else None
            ),
        }
        for h in history
    ]
    record["train_utterances"], record["train_hours"] = train_set_size(output)
    # Checkpoints of full-size models take GBs: keep only the numbers.
    for folder in glob.glob(os.path.join(output, "save", "CKPT*")):
        shutil.rmtree(folder)
    return record


def write_report(report_folder, meta, records):
    """Writes results.json and a Markdown table (last epoch of each run)."""
    os.makedirs(report_folder, exist_ok=True)
    with open(
        os.path.join(report_folder, "results.json"), "w", encoding="utf-8"
    ) as f:
        json.dump({"meta": meta, "runs": records}, f, indent=2)
    rows = [
        "| run | epoch | train s/epoch | peak GiB | train utts (h) | "
        "s/epoch vs baseline |",
        "|---|---|---|---|---|---|",
    ]
    by_name = {r["name"]: r for r in records}
    for record in records:
        if "epochs" not in record:
            rows.append(f"| {record['name']} | failed | | | | |")
            continue
        last = record["epochs"][-1]
        ratio = ""
        config, precision = record["name"].split("_", 1)
        baseline = by_name.get(f"baseline_{precision}")
        if config != "baseline" and baseline and "epochs" in baseline:
            ratio = f"{last['time_s'] / baseline['epochs'][-1]['time_s']:.2f}"
        rows.append(
            f"| {record['name']} | {last['epoch']} | {last['time_s']:.1f} | "
            f"{last['peak_GiB']} | {record['train_utterances']} "
            f"({record['train_hours']:.2f}) | {ratio} |"
        )
    with open(
        os.path.join(report_folder, "results.md"), "w", encoding="utf-8"
    ) as f:
        f.write("\n".join(rows) + "\n")


def main():
    """Prepares the corpus and the models, then times each run."""
    args = parse_args()
    start = time.time()
    deadline = None if args.deadline_s is None else start + args.deadline_s
    work = args.work or os.path.join(args.report, "work")
    paths = {
        "work": work,
        "corpus": os.path.join(work, "corpus"),
        "audio": os.path.join(work, f"{args.audio_family}-{args.size}"),
        "text": os.path.join(work, f"{args.text_family}-{args.size}"),
    }
    synthesize_corpus(
        paths["corpus"], utterances_per_speaker=args.utterances_per_speaker
    )
    transcripts = []
    for path in glob.glob(
        os.path.join(
            paths["corpus"], "Session*", "dialog", "transcriptions", "*"
        )
    ):
        with open(path, encoding="utf-8") as f:
            transcripts += [line.split(":", 1)[1] for line in f if ":" in line]
    save_random_speech_model(paths["audio"], args.audio_family, args.size)
    save_random_text_model(
        paths["text"], transcripts, args.text_family, args.size
    )
    meta = {"args": vars(args), "setup_s": round(time.time() - start, 1)}
    try:
        import torch

        if torch.cuda.is_available():
            meta["gpu"] = torch.cuda.get_device_name(0)
        meta["torch"] = torch.__version__
    except ImportError:
        pass
    records = []
    for precision in args.precisions:
        for config in args.configs:
            if deadline is not None and time.time() > deadline:
                break
            name = f"{config}_{precision}"
            overrides = CONFIGS[config] + [f"--precision={precision}"]
            records.append(run_one(args, name, overrides, paths, deadline))
            write_report(args.report, meta, records)
            print(json.dumps(records[-1])[:2000], flush=True)
    write_report(args.report, meta, records)


if __name__ == "__main__":
    main()
