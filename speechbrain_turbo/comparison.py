"""Paired comparisons of configurations run over the same folds and seeds.

A sweep folder (``cross_validate.py --output_root ROOT``) holds one
sub-folder per configuration, one ``fold<F>_seed<S>`` run folder each, with
``test_metrics.json`` and ``test_predictions.csv``. For each pair of
configurations compared (an "arm" against its reference, e.g. Turbo against
the cross-entropy baseline):

- fold-level pairs: for each fold, the arm's test metric minus the
  reference's, averaged over the seeds both ran on that fold. Their mean,
  a 95 % t-interval and a two-sided one-sample t-test p-value; the p-values
  of all the pairs of one call are Holm-adjusted together (family-wise
  error 5 %), so one call names the whole family the analysis plans;
- the smallest effect the design could detect: a two-sided 5 % t-test on
  ``n`` fold-level pairs with standard deviation ``sd`` has 80 % power at
  ``(t(0.975, n - 1) + t(0.8, n - 1)) * sd / sqrt(n)``;
- a per-utterance paired bootstrap: each fold's test utterances resampled
  with replacement (the same draw for both arms and every seed), the metric
  recomputed from the runs' predictions, averaged over seeds and folds. It
  holds the trained models fixed: its interval says how much the test
  utterances alone move the difference, the t-interval also counts what
  another training run would change.

    > python -m speechbrain_turbo.comparison ROOT --metric UA --pairs \
        two_views_ce:baseline turbo:baseline turbo:two_views_ce

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import statistics

import numpy as np
from scipy import stats
from speechbrain.utils.logger import get_logger, setup_logging

logger = get_logger(__name__)
RUN_FOLDER = re.compile(r"fold(\d+)_seed(\d+)$")


def read_runs(config_folder, metric):
    """The finished runs of one configuration.

    Arguments
    ---------
    config_folder : str
        ``ROOT/<configuration>``.
    metric : str
        ``UA``, ``WA`` or ``macro_F1`` (read from ``test_metrics.json``).

    Returns
    -------
    dict
        ``(fold, seed)`` -> ``{"score": float, "folder": str}``.
    """
    runs = {}
    for folder in sorted(glob.glob(os.path.join(config_folder, "fold*"))):
        match = RUN_FOLDER.search(folder)
        path = os.path.join(folder, "test_metrics.json")
        if match is None or not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            score = json.load(f)[metric]
        key = (int(match.group(1)), int(match.group(2)))
        runs[key] = {"score": float(score), "folder": folder}
    return runs


def fold_differences(arm, reference):
    """Per fold, the mean over shared seeds of ``arm - reference``.

    Arguments
    ---------
    arm, reference : dict
        Output of :func:`read_runs`.

    Returns
    -------
    dict
        fold -> mean difference (only folds with a shared seed).

    Example
    -------
    >>> a = {(1, 1): 0.8, (1, 2): 0.6, (2, 1): 0.5}
    >>> r = {(1, 1): 0.7, (1, 2): 0.7}
    >>> a, r = ({k: {"score": v} for k, v in x.items()} for x in (a, r))
    >>> {f: round(d, 3) for f, d in fold_differences(a, r).items()}
    {1: 0.0}
    """
    per_fold = {}
    for key in sorted(set(arm) & set(reference)):
        difference = arm[key]["score"] - reference[key]["score"]
        per_fold.setdefault(key[0], []).append(difference)
    return {fold: statistics.mean(d) for fold, d in per_fold.items()}


def t_summary(differences, confidence=0.95, power=0.8):
    """Mean, t-interval, p-value and detectable effect of paired differences.

    Arguments
    ---------
    differences : list of float
        One paired difference per independent unit (fold).
    confidence : float
        Of the interval (two-sided).
    power : float
        For the smallest detectable effect at level ``1 - confidence``.

    Returns
    -------
    dict
        ``n``, ``mean``, ``sd``, ``low``, ``high``, ``p`` and
        ``detectable`` (NaN where ``n < 2``).

    Example
    -------
    >>> s = t_summary([1.0, 2.0, 3.0])
    >>> round(s["low"], 2), round(s["high"], 2), round(s["detectable"], 2)
    (-0.48, 4.48, 3.1)
    """
    n = len(differences)
    mean = statistics.mean(differences) if n else math.nan
    if n < 2:
        return {
            "n": n,
            "mean": mean,
            "sd": math.nan,
            "low": math.nan,
            "high": math.nan,
            "p": math.nan,
            "detectable": math.nan,
        }
    sd = statistics.stdev(differences)
    alpha = 1 - confidence
    t_crit = stats.t.ppf(1 - alpha / 2, n - 1)
    half = float(t_crit * sd / math.sqrt(n))
    p = 1.0 if sd == 0 and mean == 0 else math.nan
    if sd > 0:
        p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    detectable = (t_crit + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n)
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "low": mean - half,
        "high": mean + half,
        "p": p,
        "detectable": float(detectable),
    }


def holm(p_values):
    """Holm's step-down adjustment of several p-values.

    Arguments
    ---------
    p_values : list of float
        NaNs are left as they are and not counted.

    Returns
    -------
    list of float
        Adjusted p-values, in the input order.

    Example
    -------
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = list(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = round(running, 12)
    return adjusted


def _predictions(folder):
    """A run's test predictions: ID -> (label, predicted)."""
    with open(
        os.path.join(folder, "test_predictions.csv"), encoding="utf-8"
    ) as f:
        return {
            r["ID"]: (r["label"], r["predicted"]) for r in csv.DictReader(f)
        }


def _scores(labels, predicted, samples, num_classes, metric):
    """The metric of every bootstrap sample (rows of ``samples``)."""
    targets = labels[samples]
    hits = predicted[samples] == targets
    scores = []
    for k in range(num_classes):
        is_k = targets == k
        count = is_k.sum(axis=1)
        recall = np.where(
            count > 0, (hits & is_k).sum(1) / np.maximum(count, 1), np.nan
        )
        if metric == "macro_F1":
            said_k = (predicted[samples] == k).sum(axis=1)
            true_pos = (hits & is_k).sum(axis=1)
            f1 = np.where(
                count > 0, 2 * true_pos / np.maximum(count + said_k, 1), np.nan
            )
            scores.append(f1)
        else:
            scores.append(recall)
    if metric == "WA":
        return hits.mean(axis=1)
    return np.nanmean(np.stack(scores), axis=0)


def utterance_bootstrap(
    arm, reference, metric, resamples=2000, confidence=0.95, seed=0
):
    """Paired bootstrap interval of ``arm - reference`` over test utterances.

    Arguments
    ---------
    arm, reference : dict
        Output of :func:`read_runs` (their run folders' predictions are read).
    metric : str
        ``UA``, ``WA`` or ``macro_F1`` (over the classes in the resample).
    resamples : int
        Bootstrap samples.
    confidence : float
        Of the percentile interval.
    seed : int
        Of the resampling.

    Returns
    -------
    tuple
        ``(low, high)``; NaNs without shared runs.
    """
    rng = np.random.default_rng(seed)
    shared = sorted(set(arm) & set(reference))
    folds = sorted({fold for fold, _ in shared})
    if not folds:
        return math.nan, math.nan
    total = np.zeros(resamples)
    for fold in folds:
        seeds = [s for f, s in shared if f == fold]
        first = _predictions(reference[(fold, seeds[0])]["folder"])
        ids = sorted(first)
        names = sorted({label for label, _ in first.values()})
        index = {name: i for i, name in enumerate(names)}
        samples = rng.integers(len(ids), size=(resamples, len(ids)))
        differences = np.zeros(resamples)
        for s in seeds:
            for sign, runs in ((1, arm), (-1, reference)):
                rows = _predictions(runs[(fold, s)]["folder"])
                if sorted(rows) != ids:
                    raise ValueError(
                        f"{runs[(fold, s)]['folder']}: its test utterances "
                        f"differ from {reference[(fold, seeds[0])]['folder']}'s"
                    )
                labels = np.array([index[rows[i][0]] for i in ids])
                predicted = np.array([index.get(rows[i][1], -1) for i in ids])
                differences += sign * _scores(
                    labels, predicted, samples, len(names), metric
                )
        total += differences / len(seeds)
    total /= len(folds)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(total, [tail, 100 - tail])
    return float(low), float(high)


def configurations(root):
    """The configurations of a sweep folder.

    Arguments
    ---------
    root : str
        The sweep folder.

    Returns
    -------
    list of str
        Its sub-folders' names, sorted.
    """
    return sorted(
        name
        for name in os.listdir(root)
        if os.path.isdir(os.path.join(root, name))
    )


def compare(root, pairs, metric="UA", resamples=2000):
    """Each ``(arm, reference)`` pair of a sweep folder, as one family.

    The pairs' p-values are Holm-adjusted together: list every comparison
    the analysis plan names, and only those.

    Arguments
    ---------
    root : str
        The sweep folder (one sub-folder per configuration).
    pairs : list of tuple
        ``(arm, reference)`` configuration names; the difference is
        ``arm - reference``.
    metric : str
        ``UA``, ``WA`` or ``macro_F1``.
    resamples : int
        Of the per-utterance bootstrap (0: none).

    Returns
    -------
    list of dict
        Per pair: ``arm``, ``reference``, the number of paired runs, the
        :func:`t_summary` keys in points, ``p_holm``, and the bootstrap
        interval ``boot_low`` / ``boot_high`` in points.
    """
    names = sorted({name for pair in pairs for name in pair})
    present = configurations(root)
    missing = [name for name in names if name not in present]
    if missing:
        raise ValueError(
            f"{root} has no configuration {missing[0]!r} (it has {present}); "
            "name only configurations that ran"
        )
    runs = {name: read_runs(os.path.join(root, name), metric) for name in names}
    results = []
    for arm, reference in pairs:
        differences = list(
            fold_differences(runs[arm], runs[reference]).values()
        )
        summary = t_summary([100 * d for d in differences])
        low, high = math.nan, math.nan
        if resamples and differences:
            low, high = utterance_bootstrap(
                runs[arm], runs[reference], metric, resamples
            )
        results.append(
            {
                "arm": arm,
                "reference": reference,
                "runs": len(set(runs[arm]) & set(runs[reference])),
                **summary,
                "boot_low": 100 * low,
                "boot_high": 100 * high,
            }
        )
    for result, p in zip(results, holm([r["p"] for r in results])):
        result["p_holm"] = p
    return results


def versus_probe(runs, probe_file, metric="UA"):
    """A configuration against a frozen-feature probe, fold by fold.

    Arguments
    ---------
    runs : dict
        Output of :func:`read_runs`.
    probe_file : str
        ``bench/whisper_probe.py``'s JSON report (its ``probe_own_length``
        folds: ``test_fold`` and ``test_<metric>``; the probe is
        deterministic, one score per fold).
    metric : str
        ``UA``, ``WA`` or ``macro_F1`` (the report's ``test_<metric>``).

    Returns
    -------
    dict
        :func:`t_summary` of the seed-averaged differences, in points.
    """
    with open(probe_file, encoding="utf-8") as f:
        folds = json.load(f)["probe_own_length"]["folds"]
    probe = {fold["test_fold"]: fold[f"test_{metric}"] for fold in folds}
    # The probe's one score per fold stands beside every seed of the fold.
    reference = {
        (fold, seed): {"score": probe[fold]}
        for fold, seed in runs
        if fold in probe
    }
    differences = fold_differences(runs, reference).values()
    return t_summary([100 * d for d in differences])


def markdown(results, metric):
    """A Markdown table of :func:`compare`'s results.

    Arguments
    ---------
    results : list of dict
        Output of :func:`compare`.
    metric : str
        The metric compared.

    Returns
    -------
    str
        The table.
    """
    lines = [
        f"| arm − reference | runs (folds) | test {metric}, mean "
        "[95 % CI over folds] | p (Holm) | per-utterance bootstrap 95 % "
        "| detectable at 80 % power |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['arm']} − {r['reference']} | {r['runs']} ({r['n']}) | "
            f"{r['mean']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}] | "
            f"{r['p_holm']:.3f} | "
            f"[{r['boot_low']:+.1f}, {r['boot_high']:+.1f}] | "
            f"{r['detectable']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _pair(text):
    """``ARM:REFERENCE`` -> ``(arm, reference)``, for the command line."""
    arm, colon, reference = text.partition(":")
    if not (arm and colon and reference):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not ARM:REFERENCE (e.g. turbo:baseline)"
        )
    return arm, reference


def main(argv=None):
    """Command line: writes ``comparison_<metric>.md`` and ``.json`` in ROOT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root")
    parser.add_argument(
        "--pairs",
        nargs="+",
        type=_pair,
        help="ARM:REFERENCE ..., Holm-adjusted together (default: every "
        "other configuration against --reference)",
    )
    parser.add_argument("--reference", default="baseline")
    parser.add_argument(
        "--metric", default="UA", choices=("UA", "WA", "macro_F1")
    )
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument(
        "--probe", help="bench/whisper_probe.py's report: reference - probe"
    )
    args = parser.parse_args(argv)
    setup_logging()
    pairs = args.pairs or [
        (name, args.reference)
        for name in configurations(args.root)
        if name != args.reference
    ]
    try:
        results = compare(args.root, pairs, args.metric, args.resamples)
    except ValueError as error:
        parser.error(str(error))
    table = markdown(results, args.metric)
    if args.probe:
        runs = read_runs(os.path.join(args.root, args.reference), args.metric)
        probe = versus_probe(runs, args.probe, args.metric)
        table += (
            f"\n{args.reference} − frozen probe, test {args.metric}: "
            f"{probe['mean']:+.1f} [{probe['low']:+.1f}, {probe['high']:+.1f}]"
            f" over {probe['n']} folds (p {probe['p']:.3f})\n"
        )
        results.append(
            {"arm": "frozen probe", "reference": args.reference, **probe}
        )
    stem = os.path.join(args.root, f"comparison_{args.metric}")
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    with open(stem + ".json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    logger.info("%s.md:\n%s", stem, table)


if __name__ == "__main__":
    main()
