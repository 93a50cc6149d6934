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
import sys

# The tables' statistics are cross_validate's own (one recipe folder up).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cross_validate import summarise  # noqa: E402

COLUMNS = ("valid_UA", "WA", "UA", "macro_F1", "UA_without_text")


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


def main(root):
    """Prints and writes ``<root>/summary.md``.

    Arguments
    ---------
    root : str
        Folder holding one sub-folder per configuration.
    """
    lines = [
        "| configuration | runs | valid UA | test WA | test UA "
        "| test macro-F1 | test UA without text |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "results.csv")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        summary = summarise(
            [{k: float(r[k]) for k in COLUMNS if r.get(k)} for r in rows]
        )
        cells = [percent(summary, key) for key in COLUMNS]
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(root, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1])
