"""Paired comparisons: fold-level intervals, Holm, bootstrap, power."""

import csv
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from speechbrain_turbo.comparison import (
    compare,
    holm,
    main,
    markdown,
    read_runs,
    t_summary,
    utterance_bootstrap,
    versus_probe,
)

LABELS = ["ang", "hap", "sad"]


def write_run(folder, truth, predicted):
    """A finished run: test metrics (UA, WA) and predictions."""
    os.makedirs(folder)
    with open(os.path.join(folder, "test_predictions.csv"), "w") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "label", "predicted"])
        for i, (t, p) in enumerate(zip(truth, predicted)):
            writer.writerow([f"u{i}", t, p])
    truth, predicted = np.array(truth), np.array(predicted)
    recalls = [
        float((predicted[truth == c] == c).mean()) for c in set(truth.tolist())
    ]
    metrics = {
        "UA": float(np.mean(recalls)),
        "WA": float((truth == predicted).mean()),
        "macro_F1": 0.0,
    }
    with open(os.path.join(folder, "test_metrics.json"), "w") as f:
        json.dump(metrics, f)


def make_sweep(root, errors):
    """errors: configuration -> {(fold, seed): number of wrong rows}."""
    rng = np.random.default_rng(0)
    truth = {f: list(rng.choice(LABELS, size=30)) for f in (1, 2, 3)}
    for name, runs in errors.items():
        for (fold, seed), wrong in runs.items():
            predicted = list(truth[fold])
            for i in range(wrong):
                predicted[i] = "hap" if predicted[i] != "hap" else "sad"
            write_run(
                os.path.join(root, name, f"fold{fold}_seed{seed}"),
                truth[fold],
                predicted,
            )


def test_fold_level_interval_is_a_t_interval_of_seed_averaged_pairs(tmp_path):
    base = {(f, s): 10 for f in (1, 2, 3) for s in (1, 2)}
    arm = {(1, 1): 4, (1, 2): 8, (2, 1): 9, (2, 2): 9, (3, 1): 3, (3, 2): 10}
    make_sweep(tmp_path, {"baseline": base, "turbo": arm})
    (result,) = compare(
        str(tmp_path), [("turbo", "baseline")], "WA", resamples=0
    )
    # WA moves by 1/30 per row: seed-averaged gains of 4, 1 and 3.5 rows.
    per_fold = [100 * 4 / 30, 100 * 1 / 30, 100 * 3.5 / 30]
    reference = stats.ttest_1samp(per_fold, 0.0)
    low, high = reference.confidence_interval(0.95)
    assert result["n"] == 3 and result["runs"] == 6
    assert result["mean"] == pytest.approx(np.mean(per_fold))
    assert (result["low"], result["high"]) == pytest.approx((low, high))
    assert result["p"] == pytest.approx(reference.pvalue)
    assert result["p_holm"] == pytest.approx(reference.pvalue)
    assert "| turbo − baseline | 6 (3) |" in markdown([result], "WA")


def test_runs_without_a_partner_are_left_out(tmp_path):
    base = {(1, 1): 10, (2, 1): 10}
    arm = {(1, 1): 5, (1, 2): 0, (3, 1): 0}
    make_sweep(tmp_path, {"baseline": base, "turbo": arm})
    (result,) = compare(
        str(tmp_path), [("turbo", "baseline")], "WA", resamples=0
    )
    assert result["runs"] == 1 and result["n"] == 1
    assert math.isnan(result["low"])


def test_one_call_is_one_holm_family_over_its_named_pairs(tmp_path, capsys):
    # Wrong rows on fold f: base + slope * f.
    wrong = {"baseline": (12, 0), "two_views_ce": (9, 1), "turbo": (5, 2)}
    wrong["other"] = (0, 0)
    make_sweep(
        tmp_path,
        {
            name: {(f, s): base + slope * f for f in (1, 2, 3) for s in (1, 2)}
            for name, (base, slope) in wrong.items()
        },
    )
    pairs = [("two_views_ce", "baseline"), ("turbo", "two_views_ce")]
    results = compare(str(tmp_path), pairs, "WA", resamples=0)
    # "other" is in the folder but not in the family: two tests, not three.
    assert [(r["arm"], r["reference"]) for r in results] == pairs
    assert [r["p_holm"] for r in results] == pytest.approx(
        holm([r["p"] for r in results])
    )
    # turbo - two_views_ce gains 3, 2 and 1 rows of 30 on the three folds.
    assert results[1]["mean"] == pytest.approx(100 * 2 / 30)
    assert 0 < results[0]["p"] < results[0]["p_holm"] <= 1
    # The command line writes the whole family to one file.
    main(
        [str(tmp_path), "--metric", "WA", "--resamples", "0", "--pairs"]
        + [f"{a}:{r}" for a, r in pairs]
    )
    table = (tmp_path / "comparison_WA.md").read_text()
    assert "| two_views_ce − baseline |" in table
    assert "| turbo − two_views_ce |" in table and "other" not in table
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--pairs", "paper:baseline"])
    assert "no configuration 'paper'" in capsys.readouterr().err


def test_holm_adjusts_in_step_down_order():
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])


def test_detectable_effect_has_the_stated_power():
    n, sd = 10, 2.0
    effect = t_summary(list(np.linspace(-sd, sd, n)))["detectable"]
    spread = t_summary(list(np.linspace(-sd, sd, n)))["sd"]
    # Power of the two-sided 5 % t-test at that effect (noncentral t).
    shift = effect / (spread / math.sqrt(n))
    t_crit = stats.t.ppf(0.975, n - 1)
    power = stats.nct.sf(t_crit, n - 1, shift) + stats.nct.cdf(
        -t_crit, n - 1, shift
    )
    assert power == pytest.approx(0.8, abs=0.02)


def test_bootstrap_interval_is_zero_for_equal_runs_and_covers_a_gain(
    tmp_path,
):
    base = {(f, 1): 12 for f in (1, 2, 3)}
    make_sweep(
        tmp_path,
        {
            "baseline": base,
            "same": dict(base),
            "better": {(f, 1): 4 for f in (1, 2, 3)},
        },
    )
    runs = {
        name: read_runs(os.path.join(tmp_path, name), "UA")
        for name in ("baseline", "same", "better")
    }
    assert utterance_bootstrap(
        runs["same"], runs["baseline"], "UA", resamples=200
    ) == (0.0, 0.0)
    low, high = utterance_bootstrap(
        runs["better"], runs["baseline"], "UA", resamples=500
    )
    observed = np.mean(
        [
            runs["better"][k]["score"] - runs["baseline"][k]["score"]
            for k in runs["baseline"]
        ]
    )
    assert 0 < low < observed < high


def test_bootstrap_refuses_runs_tested_on_other_utterances(tmp_path):
    make_sweep(tmp_path, {"baseline": {(1, 1): 3}, "turbo": {(1, 1): 2}})
    path = os.path.join(
        tmp_path, "turbo", "fold1_seed1", "test_predictions.csv"
    )
    with open(path, "a") as f:
        f.write("extra,ang,ang\n")
    with pytest.raises(ValueError, match="turbo/fold1_seed1"):
        compare(str(tmp_path), [("turbo", "baseline")], "UA", resamples=10)


def test_a_configuration_against_the_frozen_probe_per_fold(tmp_path):
    make_sweep(tmp_path, {"baseline": {(1, 1): 3, (1, 2): 6, (2, 1): 0}})
    runs = read_runs(os.path.join(tmp_path, "baseline"), "WA")
    probe = tmp_path / "probe.json"
    folds = [{"test_fold": 1, "test_WA": 0.8}, {"test_fold": 2, "test_WA": 0.9}]
    probe.write_text(json.dumps({"probe_own_length": {"folds": folds}}))
    result = versus_probe(runs, str(probe), "WA")
    # Fold 1: seeds at 27/30 and 24/30 average 0.85; fold 2: 1.0.
    assert result["n"] == 2
    assert result["mean"] == pytest.approx(100 * (0.05 + 0.1) / 2)
