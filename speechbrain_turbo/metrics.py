"""Classification metrics for emotion recognition and their reports.

WA (weighted accuracy) is the overall accuracy; UA (unweighted accuracy) is
the mean of the per-class recalls over the classes present in the targets;
macro-F1 averages the per-class F1 over the same classes.

Alignment and uniformity (Wang & Isola, 2020) describe a contrastive
space: on L2-normalised embeddings, alignment is the mean squared distance of
positive pairs (lower: pairs closer) and uniformity the log of the mean of
``exp(-2 ||x - y||^2)`` over all pairs (lower: more spread out).

:mod:`speechbrain_turbo.reports` writes them into a run's reports.

Authors
 * speechbrain-turbo contributors
"""

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score


def classification_metrics(targets, predictions, num_classes):
    """WA, UA, macro-F1 and the confusion matrix of a set of predictions.

    Arguments
    ---------
    targets : sequence of int
        True class ids.
    predictions : sequence of int
        Predicted class ids.
    num_classes : int
        Number of classes (rows/columns of the confusion matrix).

    Returns
    -------
    dict
        ``WA``, ``UA``, ``macro_F1`` (floats in [0, 1]) and ``confusion``
        (``[num_classes, num_classes]`` int array, rows = targets).

    Example
    -------
    >>> m = classification_metrics([0, 0, 0, 1], [0, 0, 1, 1], num_classes=2)
    >>> round(m["WA"], 3), round(m["UA"], 3)
    (0.75, 0.833)
    """
    targets = np.asarray(targets, dtype=int)
    predictions = np.asarray(predictions, dtype=int)
    if len(targets) == 0:
        raise ValueError("classification_metrics got no predictions")
    confusion = confusion_matrix(
        targets, predictions, labels=np.arange(num_classes)
    )
    support = confusion.sum(axis=1)
    present = support > 0
    recalls = confusion.diagonal()[present] / support[present]
    macro_f1 = f1_score(
        targets,
        predictions,
        labels=np.flatnonzero(present),
        average="macro",
        zero_division=0,
    )
    return {
        "WA": float(confusion.trace() / confusion.sum()),
        "UA": float(recalls.mean()),
        "macro_F1": float(macro_f1),
        "confusion": confusion,
    }


def alignment(x, y):
    """Mean squared distance between the rows of ``x`` and ``y``, normalised.

    Arguments
    ---------
    x, y : torch.Tensor
        ``[N, D]`` embeddings; row ``i`` of ``x`` and of ``y`` are positives.

    Returns
    -------
    float
        In [0, 4]; 0 when every pair coincides.

    Example
    -------
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    >>> alignment(x, -x)
    4.0
    """
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    return float((x - y).pow(2).sum(dim=-1).mean())


def contrastive_diagnostics(views, groups=None):
    """How hard the contrastive tasks of one batch are, for logging.

    For each modality with two views: the mean cosine of its positive pairs
    (the two views of a row) and of its negatives (view 1 of a row against
    view 2 of the others). For each pair of modalities (view 1 of each):
    the same two cosines, and the cross-modal retrieval R@1 (how often a
    row's nearest column of the other modality is its own, averaged over
    both directions) beside its chance level. Rows of the same ``groups``
    id (e.g. the same transcript) are left out of each other's negatives
    and candidates, as in :class:`speechbrain_turbo.losses.TurboLoss`; the
    chance level is the mean over rows of 1 / their candidates.

    Arguments
    ---------
    views : dict
        Modality name -> tuple of one or two ``[B, D]`` tensors.
    groups : torch.Tensor, optional
        ``[B]`` integer ids.

    Returns
    -------
    dict
        Floats: ``pos_cos_<m>``, ``neg_cos_<m>``, ``pos_cos_<m>_<n>``,
        ``neg_cos_<m>_<n>``, ``R1_<m>_<n>`` and ``R1_chance``.

    Example
    -------
    >>> a = torch.eye(3)
    >>> stats = contrastive_diagnostics({"audio": (a, a), "text": (a,)})
    >>> stats["pos_cos_audio"], stats["neg_cos_audio"], stats["R1_audio_text"]
    (1.0, 0.0, 1.0)
    >>> round(stats["R1_chance"], 3)
    0.333
    """
    unit = {
        m: [F.normalize(v.detach().float(), dim=-1) for v in pair]
        for m, pair in views.items()
    }
    rows = next(iter(unit.values()))[0].shape[0]
    own = torch.eye(rows, dtype=torch.bool)
    # Columns that are neither the row itself nor left out with it.
    candidate = ~own
    if groups is not None:
        groups = groups.reshape(-1).cpu()
        candidate &= groups[:, None] != groups[None, :]
    stats = {}

    def cosines(name, x, y):
        """Records the mean positive and negative cosines of ``x`` against
        ``y`` (unit rows) under ``name``; returns the similarities.
        """
        similarity = (x @ y.T).cpu()
        stats[f"pos_cos_{name}"] = float(similarity.diagonal().mean())
        if candidate.any():
            stats[f"neg_cos_{name}"] = float(similarity[candidate].mean())
        return similarity

    for m, pair in unit.items():
        if len(pair) == 2:
            cosines(m, *pair)
    for m, n in itertools.combinations(unit, 2):
        similarity = cosines(f"{m}_{n}", unit[m][0], unit[n][0])
        hits = []
        for scores in (similarity, similarity.T):
            scores = scores.masked_fill(~(candidate | own), float("-inf"))
            hits.append((scores.argmax(dim=1) == torch.arange(rows)).float())
        stats[f"R1_{m}_{n}"] = float(torch.cat(hits).mean())
        stats["R1_chance"] = float((1.0 / (candidate.sum(1) + 1)).mean())
    return stats


def uniformity(x, t=2.0, block_rows=1024):
    """Log of the mean Gaussian potential over all pairs of normalised rows.

    Computed ``block_rows`` rows at a time: memory grows with the number
    of rows, not with the number of pairs.

    Arguments
    ---------
    x : torch.Tensor
        ``[N, D]`` embeddings, N >= 2.
    t : float
        Scale of the potential (2 in Wang & Isola).
    block_rows : int
        Rows compared with all the others at once.

    Returns
    -------
    float
        Lower is more uniform; 0 when all rows coincide.

    Example
    -------
    >>> uniformity(torch.ones(3, 4))
    0.0
    >>> round(uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])), 1)
    -8.0
    """
    x = F.normalize(x.float(), dim=-1)
    rows = x.shape[0]
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, rows, block_rows):
        block = x[start : start + block_rows]
        squared = (2.0 - 2.0 * block @ x.T).clamp_min(0.0)
        # Each pair once: the columns after the row.
        later = (
            torch.arange(rows)
            > torch.arange(start, start + len(block))[:, None]
        )
        total += squared[later].mul(-t).exp().double().sum()
    return float((total / (rows * (rows - 1) / 2)).log())
