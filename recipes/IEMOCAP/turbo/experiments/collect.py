#!/usr/bin/env python3
"""Gathers the results.csv of every configuration under a sweep folder into
one Markdown table: mean ± std over runs of the validation UA of the selected
checkpoints and of the test WA, UA and macro-F1.

Usage: python experiments/collect.py results/demo_sweep

Authors
 * speechbrain-turbo contributors
"""

import csv
import os
import statistics
import sys


def mean_std(values):
    """Formats ``mean ± std`` (sample std; 0 for one value) in percent.

    Arguments
    ---------
    values : list of float
        Metric values in [0, 1].

    Returns
    -------
    str
        e.g. ``"52.3 ± 1.2"``.

    Example
    -------
    >>> mean_std([0.5, 0.6])
    '55.0 ± 7.1'
    """
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main(root):
    """Prints and writes ``<root>/summary.md``.

    Arguments
    ---------
    root : str
        Folder holding one sub-folder per configuration.
    """
    lines = [
        "| configuration | runs | valid UA | test WA | test UA "
        "| test macro-F1 |",
        "|---|---|---|---|---|---|",
    ]
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "results.csv")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        cells = [
            mean_std([float(r[key]) for r in rows if r[key] != ""])
            for key in ("valid_UA", "WA", "UA", "macro_F1")
        ]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(root, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1])
