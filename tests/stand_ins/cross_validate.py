"""Stands in for a recipe's cross_validate.py in the tests of
bench/turbo_comparison.sh: logs what it is asked (to ``$FAKE_LOG``),
"trains" each unfinished fold and seed (a test_metrics.json, test
predictions, a checkpoint, a log) and writes the configuration's
results.csv, as the real one does.
"""

import csv
import json
import os
import sys


def values(args, flag):
    """The values after ``flag`` up to the next option."""
    start = args.index(flag) + 1
    end = next(
        (i for i in range(start, len(args)) if args[i].startswith("--")),
        len(args),
    )
    return args[start:end]


def main(args):
    """Runs (or skips) every fold and seed of ``args``."""
    overrides = args[args.index("--") + 1 :]
    name = values(args, "--name")[0]
    root = values(args, "--output_root")[0]
    rows = []
    for seed in values(args, "--seeds"):
        for fold in values(args, "--folds"):
            run = os.path.join(root, name, f"fold{fold}_seed{seed}")
            metrics = os.path.join(run, "test_metrics.json")
            done = os.path.exists(metrics)
            call = [name, fold, seed, "skip" if done else "run", overrides]
            with open(os.environ["FAKE_LOG"], "a", encoding="utf-8") as log:
                log.write(json.dumps(call) + "\n")
            if not done:
                checkpoint = os.path.join(run, "save", "CKPT+1")
                os.makedirs(checkpoint)
                for path, text in (
                    (os.path.join(checkpoint, "model.ckpt"), "x"),
                    (os.path.join(run, "train_log.txt"), "epoch: 1\n"),
                    (
                        metrics,
                        json.dumps(
                            {
                                "UA": 0.5,
                                "epoch": 1,
                                "selected_on_valid": {"UA": 0.6},
                            }
                        ),
                    ),
                    (
                        os.path.join(run, "history.jsonl"),
                        '{"epoch": 1, "train": {"cross_modal": 0.5}}\n',
                    ),
                    (
                        os.path.join(run, "test_predictions.csv"),
                        "ID,label,predicted\na,x,x\nb,y,x\n",
                    ),
                ):
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(text)
            rows.append(
                {"fold": fold, "seed": seed, "valid_UA": 0.6, "WA": 0.5}
                | {"UA": 0.5, "macro_F1": 0.5}
            )
    path = os.path.join(root, name, "results.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
