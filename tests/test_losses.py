"""TurboLoss against a plain-loop implementation of its definition."""

import itertools
import math

import pytest
import torch

from speechbrain_turbo.losses import TurboLoss


def reference_turbo(
    views,
    temperature,
    w_in,
    w_cross,
    labels,
    groups,
    positive_labels=None,
    reduction="mean",
    symmetric="all",
):
    """The definition, one row and one term at a time. With
    ``positive_labels``, same-label columns are positives (supervised
    contrastive): the row's loss is the mean over them."""

    def unit(v):
        return [x / math.sqrt(sum(float(c) ** 2 for c in x)) for x in v]

    def dot(x, y):
        return sum(float(a) * float(b) for a, b in zip(x, y))

    def positive(i, j):
        if positive_labels is None:
            return i == j
        return positive_labels[i] == positive_labels[j]

    def excluded(i, j):
        if positive(i, j):
            return False
        if labels is not None and labels[i] == labels[j]:
            return True
        return groups is not None and groups[i] == groups[j]

    def directional(x, y):
        total = 0.0
        for i in range(len(x)):
            denominator = sum(
                math.exp(dot(x[i], y[j]) / temperature)
                for j in range(len(y))
                if not excluded(i, j)
            )
            terms = [
                -math.log(math.exp(dot(x[i], y[p]) / temperature) / denominator)
                for p in range(len(y))
                if positive(i, p)
            ]
            total += sum(terms) / len(terms)
        return total / len(x)

    def term(x, y, both_ways):
        if not both_ways:
            return directional(x, y)
        return (directional(x, y) + directional(y, x)) / 2

    def reduce(terms):
        if not terms:
            return 0.0
        return sum(terms) / (len(terms) if reduction == "mean" else 1)

    normed = {m: (unit(a), unit(b)) for m, (a, b) in views.items()}
    in_modal = reduce(
        [term(a, b, symmetric == "all") for a, b in normed.values()]
    )
    cross_modal = reduce(
        [
            term(x, y, symmetric != "none")
            for m, n in itertools.combinations(normed, 2)
            for x in normed[m]
            for y in normed[n]
        ]
    )
    return {
        "in_modal": in_modal,
        "cross_modal": cross_modal,
        "loss": w_in * in_modal + w_cross * cross_modal,
    }


def random_views(num_modalities, batch_size=6, dim=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    names = ["audio", "text", "video"][:num_modalities]
    return {
        m: tuple(
            torch.randn(
                batch_size, dim, generator=generator, dtype=torch.float64
            )
            * 3
            for _ in range(2)
        )
        for m in names
    }


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
@pytest.mark.parametrize("label_aware", [False, True])
@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.3, 2.0), (0.0, 1.0)])
def test_matches_definition(num_modalities, label_aware, use_groups, weights):
    views = random_views(num_modalities, seed=num_modalities)
    labels = torch.tensor([0, 1, 0, 2, 1, 3])
    groups = torch.tensor([7, 8, 9, 7, 10, 11]) if use_groups else None
    temperature = 0.2
    loss_fn = TurboLoss(
        temperature=temperature,
        in_modal_weight=weights[0],
        cross_modal_weight=weights[1],
        label_aware=label_aware,
    )
    out = loss_fn(views, labels=labels, groups=groups)
    expected = reference_turbo(
        views,
        temperature,
        weights[0],
        weights[1],
        labels.tolist() if label_aware else None,
        groups.tolist() if use_groups else None,
    )
    for key in ("loss", "in_modal", "cross_modal"):
        assert out[key].dim() == 0
        assert out[key].item() == pytest.approx(expected[key], abs=1e-5)


@pytest.mark.parametrize("num_modalities", [1, 2, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("symmetric", ["all", "none", "cross_modal"])
def test_reduction_and_directions_match_definition(
    num_modalities, reduction, symmetric
):
    views = random_views(num_modalities, seed=10 + num_modalities)
    labels = torch.tensor([0, 1, 0, 2, 1, 3])
    groups = torch.tensor([7, 8, 9, 7, 10, 11])
    loss_fn = TurboLoss(
        temperature=0.2,
        in_modal_weight=0.5,
        cross_modal_weight=2.0,
        label_aware=True,
        reduction=reduction,
        symmetric=symmetric,
    )
    out = loss_fn(views, labels=labels, groups=groups)
    expected = reference_turbo(
        views,
        0.2,
        0.5,
        2.0,
        labels.tolist(),
        groups.tolist(),
        reduction=reduction,
        symmetric=symmetric,
    )
    for key in ("loss", "in_modal", "cross_modal"):
        assert out[key].item() == pytest.approx(expected[key], abs=1e-5)


def paper_objective(h1a, h2a, h1t, h2t, temperature):
    """The Turbo paper's objective as published in words: the unweighted
    sum of six InfoNCE terms, in-modal one-directional (SimCSE: the row's
    other view is its positive, the batch's other rows its negatives),
    cross-modal in both directions (CLIP), written out term by term."""

    def info_nce(anchors, candidates):
        total = 0.0
        for i, anchor in enumerate(anchors):
            sims = [
                torch.nn.functional.cosine_similarity(
                    anchor, candidate, dim=0
                ).item()
                / temperature
                for candidate in candidates
            ]
            total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
        return total / len(anchors)

    def clip(x, y):
        return (info_nce(x, y) + info_nce(y, x)) / 2

    l_in_audio = info_nce(h1a, h2a)
    l_in_text = info_nce(h1t, h2t)
    l_x = clip(h1a, h1t) + clip(h1a, h2t) + clip(h2a, h1t) + clip(h2a, h2t)
    return l_in_audio + l_in_text + l_x


def test_paper_setting_is_the_six_term_sum():
    """reduction=sum, symmetric=cross_modal, unit weights, no label-aware
    negatives and no groups reproduce the paper's sum to 1e-6."""
    views = random_views(2, batch_size=8, dim=6, seed=21)
    (h1a, h2a), (h1t, h2t) = views["audio"], views["text"]
    loss_fn = TurboLoss(
        temperature=1.0, reduction="sum", symmetric="cross_modal"
    )
    out = loss_fn(views)
    expected = paper_objective(h1a, h2a, h1t, h2t, temperature=1.0)
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    # At a usual temperature (fp32 logit scale), to the scale's precision.
    loss_fn = TurboLoss(
        temperature=0.07, reduction="sum", symmetric="cross_modal"
    )
    expected = paper_objective(h1a, h2a, h1t, h2t, temperature=0.07)
    assert loss_fn(views)["loss"].item() == pytest.approx(expected, rel=1e-6)
    # The mean reduction of the same terms: the in-modal mean over 2 terms
    # and the cross-modal mean over 4.
    mean = TurboLoss(temperature=1.0, symmetric="cross_modal")(views)
    total = out["in_modal"] / 2 + out["cross_modal"] / 4
    assert mean["loss"].item() == pytest.approx(total.item(), abs=1e-9)


def test_unknown_reduction_or_direction_is_refused():
    with pytest.raises(ValueError, match="reduction must be"):
        TurboLoss(reduction="max")
    with pytest.raises(ValueError, match="symmetric must be"):
        TurboLoss(symmetric="in_modal")
    with pytest.raises(ValueError, match="symmetric must be"):
        TurboLoss(symmetric=True)


@pytest.mark.parametrize("num_modalities", [1, 2])
@pytest.mark.parametrize("use_groups", [False, True])
def test_label_positives_match_the_supervised_contrastive_definition(
    num_modalities, use_groups
):
    views = random_views(num_modalities, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    # Rows 0 and 3 share a group but not a label: masked; rows 1 and 4
    # share both: positives.
    groups = torch.tensor([7, 8, 9, 7, 8, 11]) if use_groups else None
    loss_fn = TurboLoss(temperature=0.2, label_positives=True)
    out = loss_fn(views, labels=labels, groups=groups)
    expected = reference_turbo(
        views,
        0.2,
        1.0,
        1.0,
        None,
        groups.tolist() if use_groups else None,
        positive_labels=labels.tolist(),
    )
    for key in ("loss", "in_modal", "cross_modal"):
        assert out[key].item() == pytest.approx(expected[key], abs=1e-5)
    # Without labels it is the plain loss.
    plain = TurboLoss(temperature=0.2)(views, groups=groups)["loss"]
    assert float(loss_fn(views, groups=groups)["loss"]) == float(plain)


def test_labels_ignored_unless_label_aware():
    views = random_views(2)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    plain = TurboLoss()(views)["loss"]
    assert float(TurboLoss()(views, labels=labels)["loss"]) == float(plain)
    aware = TurboLoss(label_aware=True)(views, labels=labels)["loss"]
    assert float(aware) < float(plain)


def test_learned_temperature_matches_definition_and_gets_gradient():
    views = random_views(2)
    loss_fn = TurboLoss(temperature=0.1, learn_temperature=True).double()
    out = loss_fn(views)
    expected = reference_turbo(views, 0.1, 1.0, 1.0, None, None)
    assert out["loss"].item() == pytest.approx(expected["loss"], abs=1e-5)
    assert float(out["inverse_temperature"]) == pytest.approx(10.0)
    out["loss"].backward()
    assert loss_fn.log_inverse_temperature.grad is not None
    assert loss_fn.log_inverse_temperature.grad.abs() > 0


def test_learned_temperature_is_clamped_after_the_step_not_in_forward():
    loss_fn = TurboLoss(temperature=0.1, learn_temperature=True)
    with torch.no_grad():
        loss_fn.log_inverse_temperature.fill_(math.log(150.0))
    views = random_views(2)
    views = {m: tuple(v.float() for v in pair) for m, pair in views.items()}
    # Beyond the bound the forward uses the value as it is, so the
    # parameter keeps a gradient that can bring it back.
    out = loss_fn(views)
    expected = reference_turbo(views, 1 / 150, 1.0, 1.0, None, None)
    assert float(out["loss"]) == pytest.approx(expected["loss"], rel=1e-4)
    out["loss"].backward()
    assert loss_fn.log_inverse_temperature.grad.abs() > 0
    loss_fn.clamp_inverse_temperature_()
    assert float(loss_fn.inverse_temperature()) == pytest.approx(100.0)
    # Fixed temperatures are used as given, even beyond the bound.
    fixed = TurboLoss(temperature=0.005)
    fixed.clamp_inverse_temperature_()
    assert float(fixed.inverse_temperature()) == pytest.approx(200.0)


def test_gradients_flow_to_every_view():
    views = {
        m: tuple(torch.randn(5, 4, requires_grad=True) for _ in range(2))
        for m in ("audio", "text")
    }
    TurboLoss()(views)["loss"].backward()
    for pair in views.values():
        for view in pair:
            assert view.grad is not None and view.grad.abs().sum() > 0


def test_logits_are_fp32_under_autocast():
    """Under bf16 autocast the similarities are still computed in fp32: the
    loss equals the fp32 definition far below bf16's resolution."""
    generator = torch.Generator().manual_seed(0)
    views = {
        m: tuple(
            torch.randn(16, 64, generator=generator).bfloat16()
            for _ in range(2)
        )
        for m in ("audio", "text")
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = TurboLoss(temperature=0.05)(views)
    assert out["loss"].dtype == torch.float32
    expected = reference_turbo(
        {m: (a.float(), b.float()) for m, (a, b) in views.items()},
        0.05,
        1.0,
        1.0,
        labels=None,
        groups=None,
    )["loss"]
    assert float(out["loss"]) == pytest.approx(expected, abs=1e-4)


def test_single_row_and_fully_masked_batches_are_finite():
    one = {"audio": (torch.randn(1, 4), torch.randn(1, 4))}
    assert float(TurboLoss()(one)["loss"]) == 0.0
    views = random_views(2)
    same_label = torch.zeros(6, dtype=torch.long)
    out = TurboLoss(label_aware=True)(views, labels=same_label)
    assert torch.isfinite(out["loss"]) and float(out["loss"]) == 0.0


def test_wrong_number_of_groups_is_an_error():
    with pytest.raises(ValueError, match="3 labels/groups for a batch of 6"):
        TurboLoss()(random_views(2), groups=torch.arange(3))
