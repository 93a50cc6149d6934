"""What the Turbo terms did in training: a table per configuration.

For each configuration folder under ROOT (``<name>/fold*_seed*/`` with a
``history.jsonl`` and a ``test_metrics.json``, as ``cross_validate.py``
and ``bench/turbo_comparison.sh`` leave them), the mean over its runs of
each training term in the first epoch and in the epoch that validation
selected, the mean gradient ratio (the weighted Turbo term's gradient norm
on the encoders over the cross-entropy's) over the epochs, and the
validation cross-modal retrieval rate at the selected epoch beside its
chance level. A term near zero from the first epochs on teaches nothing.

    python bench/turbo_terms.py bench/measurements/turbo_comparison/EmoDB/turbo

Authors
 * speechbrain-turbo contributors
"""

import argparse
import glob
import json
import os
import statistics

TERMS = ("in_modal_audio", "in_modal_text", "cross_modal", "consistency")


def run_terms(run_folder):
    """The terms of one finished run.

    Arguments
    ---------
    run_folder : str
        A run's folder (``history.jsonl``, ``test_metrics.json``).

    Returns
    -------
    dict
        ``<term>_first`` and ``<term>_selected`` for each term logged,
        ``grad_ratio`` (mean over the epochs that logged it), ``selected``
        (the epoch), ``R1`` and ``R1_chance`` (validation, selected epoch).
    """
    with open(os.path.join(run_folder, "test_metrics.json")) as f:
        selected = json.load(f)["epoch"]
    with open(os.path.join(run_folder, "history.jsonl")) as f:
        epochs = {line["epoch"]: line for line in map(json.loads, f)}
    first, chosen = epochs[min(epochs)], epochs[selected]
    row = {"selected": selected}
    for term in TERMS:
        if term in first["train"]:
            row[f"{term}_first"] = first["train"][term]
            row[f"{term}_selected"] = chosen["train"][term]
    ratios = [
        e["train"]["grad_ratio"]
        for e in epochs.values()
        if e["train"].get("grad_ratio") is not None
    ]
    if ratios:
        row["grad_ratio"] = statistics.mean(ratios)
    for key in ("R1_audio_text", "R1_chance"):
        if key in chosen.get("valid", {}):
            row[key] = chosen["valid"][key]
    return row


def mean(runs, key):
    """The mean of ``key`` over the runs that have it, or None."""
    values = [r[key] for r in runs if key in r]
    return statistics.mean(values) if values else None


def table(root):
    """The Markdown table of every configuration under ``root``.

    Arguments
    ---------
    root : str
        Folder holding one sub-folder per configuration.

    Returns
    -------
    str
        One row per configuration with finished runs.

    Example
    -------
    >>> import tempfile
    >>> run = os.path.join(tempfile.mkdtemp(), "turbo", "fold1_seed1")
    >>> os.makedirs(run)
    >>> with open(os.path.join(run, "test_metrics.json"), "w") as f:
    ...     _ = f.write('{"epoch": 2}')
    >>> with open(os.path.join(run, "history.jsonl"), "w") as f:
    ...     for epoch, term in ((1, 0.5), (2, 0.01)):
    ...         train = {"cross_modal": term, "grad_ratio": 0.1}
    ...         print(json.dumps({"epoch": epoch, "train": train}), file=f)
    >>> root = os.path.dirname(os.path.dirname(run))
    >>> print(table(root).splitlines()[-1])
    | turbo | 1 | 2.0 | 0.500 → 0.010 | 0.100 | - |
    """
    header = ["configuration", "runs", "selected epoch"]
    rows = []
    names = sorted(
        name
        for name in os.listdir(root)
        if os.path.isdir(os.path.join(root, name))
    )
    for name in names:
        runs = [
            run_terms(os.path.dirname(path))
            for path in sorted(
                glob.glob(os.path.join(root, name, "*", "test_metrics.json"))
            )
            if os.path.exists(
                os.path.join(os.path.dirname(path), "history.jsonl")
            )
        ]
        if runs:
            rows.append((name, runs))
    # The terms any run logged (a configuration without one shows "-").
    terms = [
        t
        for t in TERMS
        if any(f"{t}_first" in run for _, runs in rows for run in runs)
    ]
    header += [f"{t} (first → selected)" for t in terms]
    header += ["grad_ratio", "valid R@1 (chance)"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, runs in rows:
        cells = [name, str(len(runs)), f"{mean(runs, 'selected'):.1f}"]
        for term in terms:
            first = mean(runs, f"{term}_first")
            chosen = mean(runs, f"{term}_selected")
            cells.append(
                "-" if first is None else f"{first:.3f} → {chosen:.3f}"
            )
        ratio = mean(runs, "grad_ratio")
        cells.append("-" if ratio is None else f"{ratio:.3f}")
        recall, chance = mean(runs, "R1_audio_text"), mean(runs, "R1_chance")
        cells.append("-" if recall is None else f"{recall:.2f} ({chance:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("root", help="folder of configuration folders")
    print(table(cli.parse_args().root))
