"""Classification metrics for emotion recognition and their reports.

WA (weighted accuracy) is the overall accuracy; UA (unweighted accuracy) is
the mean of the per-class recalls over the classes present in the targets;
macro-F1 averages the per-class F1 over the same classes.

Alignment and uniformity (Wang & Isola, 2020) describe a contrastive
space: on L2-normalised embeddings, alignment is the mean squared distance of
positive pairs (lower: pairs closer) and uniformity the log of the mean of
``exp(-2 ||x - y||^2)`` over all pairs (lower: more spread out).

:class:`StageReports` gives TurboBrain these metrics per stage and writes
a run's reports.

Authors
 * speechbrain-turbo contributors
"""

import csv
import itertools
import json
import os
import time

import numpy as np
import speechbrain as sb
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

# The curves are redrawn after an epoch only when the last drawing is this
# old (and always after the last epoch): drawing takes about a second,
# as long as a whole epoch of a small model.
CURVES_INTERVAL_S = 60.0


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


def write_confusion_matrix(confusion, class_names, path_stem):
    """Writes a confusion matrix as ``<path_stem>.csv`` and ``.png``.

    Arguments
    ---------
    confusion : numpy.ndarray
        ``[C, C]`` counts, rows = true class, columns = predicted class.
    class_names : list of str
        Name of each class, in index order.
    path_stem : str
        Output path without extension.

    Returns
    -------
    tuple of str
        The CSV and PNG paths.

    Example
    -------
    >>> import tempfile, os
    >>> stem = os.path.join(tempfile.mkdtemp(), "confusion")
    >>> csv_path, png_path = write_confusion_matrix(
    ...     np.array([[3, 1], [0, 2]]), ["neu", "ang"], stem
    ... )
    >>> open(csv_path).read().splitlines()[1]
    'neu,3,1'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path, png_path = f"{path_stem}.csv", f"{path_stem}.png"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\predicted", *class_names])
        for name, row in zip(class_names, confusion):
            writer.writerow([name, *(int(c) for c in row)])

    # Colour by row-normalised recall so that rare classes stay readable.
    support = confusion.sum(axis=1, keepdims=True)
    recall = confusion / np.maximum(support, 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(class_names) + 2,) * 2)
    ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(confusion.shape):
        ax.text(
            j,
            i,
            f"{confusion[i, j]}\n{recall[i, j]:.0%}",
            ha="center",
            va="center",
            color="white" if recall[i, j] > 0.5 else "black",
        )
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path


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


def plot_training_curves(history, png_path):
    """Plots per-epoch statistics: losses, WA / UA, alignment, uniformity.

    Arguments
    ---------
    history : list of dict
        One record per epoch: ``{"epoch": int, "train": {...},
        "valid": {...}}``; a repeated epoch (a resumed run) keeps its last
        record.
    png_path : str
        Output PNG path.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> history = [
    ...     {"epoch": e, "train": {"CE": 1 / e}, "valid": {"UA": e / 10}}
    ...     for e in (1, 2)
    ... ]
    >>> plot_training_curves(history, path)
    >>> open(path, "rb").read(4)[1:]
    b'PNG'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_epoch = {record["epoch"]: record for record in history}
    epochs = sorted(by_epoch)
    panels = {
        "losses": lambda k: (
            k in ("CE", "in_modal", "cross_modal", "total", "loss")
        ),
        "accuracy": lambda k: k in ("WA", "UA", "macro_F1"),
        "alignment": lambda k: k.startswith("align_"),
        "uniformity": lambda k: k.startswith("unif_"),
    }
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5))
    for ax, (title, wanted) in zip(axes, panels.items()):
        for stage in ("train", "valid"):
            keys = sorted(
                {k for e in epochs for k in by_epoch[e].get(stage, {})}
            )
            for key in filter(wanted, keys):
                points = [
                    (e, by_epoch[e][stage][key])
                    for e in epochs
                    if key in by_epoch[e].get(stage, {})
                ]
                ax.plot(*zip(*points), marker="o", label=f"{stage} {key}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


class StageReports:
    """Mixin for ``TurboBrain``: the metrics of a validation or test stage
    and the files a run leaves (``history.jsonl``, training curves, test
    metrics, predictions and confusion matrices).

    It reads the Brain's ``hparams`` (``output_folder``, ``label_encoder``,
    ``epoch_counter``), ``modalities``, ``train_stats``, the epoch's
    accumulators (set in ``on_stage_start``), ``missing_modalities``, the
    stage's ``ids``, ``predicted``, ``targets`` and ``projected`` lists and
    its per-batch means (``eval_sums`` over ``eval_batches``), and
    ``_gather_predictions`` (which collects every DDP process's share).
    :meth:`evaluate_without` tests again with modalities withheld.
    """

    def evaluate_without(self, missing, test_set, **kwargs):
        """Tests with some modalities withheld, e.g. no transcripts.

        The fusion puts its "absent" embedding in their place (see
        :class:`speechbrain_turbo.models.ConcatFusion`: learned with modality
        dropout, else a zero vector that training never saw, which the log
        says); the reports are
        written as ``test_metrics_without_<modalities>.json`` and
        ``test_confusion_without_<modalities>.csv`` / ``.png``.

        Arguments
        ---------
        missing : list of str
            The modalities to withhold.
        test_set : Dataset or DataLoader
            As for ``evaluate``.
        **kwargs : dict
            Passed to ``evaluate`` (``max_key``, ``test_loader_kwargs``).

        Returns
        -------
        float
            The test loss.
        """
        unknown = [m for m in missing if m not in self.modalities]
        if unknown or len(missing) >= len(self.modalities):
            raise ValueError(
                f"Cannot test without {list(missing)}: the model's "
                f"modalities are {self.modalities}, and one must remain"
            )
        fusion = getattr(self.modules.fusion, "module", self.modules.fusion)
        if not getattr(fusion, "modality_dropout", 0) > 0:
            logger.warning(
                "Testing without %s: the model was trained without modality "
                "dropout, so the 'absent' embedding in their place is an "
                "untrained zero placeholder; these numbers say how the model "
                "copes with it, not what audio alone can do (train with "
                "--modality_dropout for that).",
                list(missing),
            )
        self.missing_modalities = tuple(missing)
        try:
            return self.evaluate(test_set, **kwargs)
        finally:
            self.missing_modalities = ()

    def _add_train_terms(self, terms):
        """Adds a training step's loss terms to the epoch's sums; a
        non-finite step (skipped by ``fit_batch``) is left out.
        """
        if not torch.isfinite(terms["total"]):
            return
        for name, value in terms.items():
            value = value.detach() if torch.is_tensor(value) else value
            self.train_sums[name] = self.train_sums.get(name, 0.0) + float(
                value
            )
        self.train_steps += 1

    def _train_epoch_stats(self):
        """The epoch's mean loss terms, skipped steps, padding fraction of
        the audio batches, wall time and (on a GPU) peak memory.
        """
        steps = max(self.train_steps, 1)
        stats = {name: total / steps for name, total in self.train_sums.items()}
        stats["skipped_steps"] = self.skipped_steps
        stats["padding"] = self.padded_samples / max(self.audio_samples, 1)
        # The cost of an epoch, next to what it bought.
        stats["time_s"] = time.perf_counter() - self._stage_start
        if torch.cuda.is_available():
            stats["peak_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        return stats

    def _record_history(self, epoch, valid_stats):
        """Appends the epoch to history.jsonl and redraws the curves PNG
        (after the first and the last epoch, and in between when the last
        drawing is ``CURVES_INTERVAL_S`` old).
        """
        if not sb.utils.distributed.if_main_process():
            return
        folder = self.hparams.output_folder
        path = os.path.join(folder, "history.jsonl")
        record = {
            "epoch": epoch,
            "train": self.train_stats,
            "valid": valid_stats,
        }
        # A run stopped after an epoch's line but before its checkpoint
        # trains that epoch again: its earlier line goes.
        earlier = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                earlier = [
                    line
                    for line in f
                    if line.strip() and json.loads(line)["epoch"] < epoch
                ]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(earlier)
            f.write(json.dumps(record) + "\n")
        drawn = getattr(self, "_curves_drawn_at", None)
        last_epoch = epoch >= self.hparams.epoch_counter.limit
        if (
            drawn is not None
            and not last_epoch
            and time.monotonic() - drawn < CURVES_INTERVAL_S
        ):
            return
        with open(path, encoding="utf-8") as f:
            history = [json.loads(line) for line in f]
        plot_training_curves(
            history, os.path.join(folder, "training_curves.png")
        )
        self._curves_drawn_at = time.monotonic()

    def _evaluation_stats(self, stage_loss):
        """WA, UA and macro-F1 of the stage's predictions."""
        self._gather_predictions()
        # The part that sharding divides: loading, scoring and gathering.
        self.scoring_seconds = time.perf_counter() - self._stage_start
        self._metrics = classification_metrics(
            torch.cat(self.targets).numpy(),
            torch.cat(self.predicted).numpy(),
            num_classes=len(self.hparams.label_encoder),
        )
        stats = {
            "loss": stage_loss,
            **{k: self._metrics[k] for k in ("WA", "UA", "macro_F1")},
        }
        batches = max(getattr(self, "eval_batches", 0), 1)
        terms = {
            name: total / batches
            for name, total in getattr(self, "eval_sums", {}).items()
        }
        return {**stats, **self._representation_stats(), **terms}

    def _representation_stats(self):
        """Uniformity of each modality's contrastive embeddings and the
        alignment of every pair of modalities (same utterance = positive),
        over the whole stage; empty when the Turbo term is off.
        """
        projected = {m: torch.cat(v) for m, v in self.projected.items()}
        stats = {}
        for m, embeddings in projected.items():
            if len(embeddings) > 1:
                stats[f"unif_{m}"] = uniformity(embeddings)
        for m, n in itertools.combinations(projected, 2):
            stats[f"align_{m}_{n}"] = alignment(projected[m], projected[n])
        return stats

    def _write_test_report(self, stats):
        """Writes test metrics (JSON), per-utterance predictions (CSV) and
        the confusion matrix (CSV, PNG).
        """
        folder = self.hparams.output_folder
        encoder = self.hparams.label_encoder
        names = [encoder.ind2lab[i] for i in range(len(encoder))]
        suffix = ""
        if self.missing_modalities:
            suffix = "_without_" + "_".join(self.missing_modalities)
        csv_path, png_path = write_confusion_matrix(
            self._metrics["confusion"],
            names,
            os.path.join(folder, f"test_confusion{suffix}"),
        )
        # The validation scores of the checkpoint tested, so that model
        # selection can be audited (and done) on validation only.
        report = {
            **stats,
            "epoch": self.hparams.epoch_counter.current,
            "selected_on_valid": {
                k: v
                for k, v in getattr(self, "selected_checkpoint", {}).items()
                if k != "unixtime"
            },
        }
        # Wall time of the test (varies): scoring every process's share and
        # gathering it, then the whole stage with its reports.
        report["scoring_seconds"] = self.scoring_seconds
        report["test_seconds"] = time.perf_counter() - self._stage_start
        if self.missing_modalities:
            report["without"] = list(self.missing_modalities)
        else:
            # CPU time of this process so far (all its threads): preparation,
            # training and this test. A resumed run counts its last part only.
            report["process_cpu_minutes"] = time.process_time() / 60
        if getattr(self, "scored_per_process", None):
            report["scored_per_process"] = self.scored_per_process
        with open(
            os.path.join(folder, f"test_predictions{suffix}.csv"),
            "w",
            newline="",
            encoding="utf-8",
        ) as f:
            writer = csv.writer(f)
            writer.writerow(["ID", "label", "predicted"])
            for item_id, target, predicted in zip(
                self.ids, torch.cat(self.targets), torch.cat(self.predicted)
            ):
                writer.writerow(
                    [item_id, names[int(target)], names[int(predicted)]]
                )
        with open(
            os.path.join(folder, f"test_metrics{suffix}.json"),
            "w",
            encoding="utf-8",
        ) as f:
            json.dump(report, f, indent=2)
        logger.info(
            "Test%s WA %.4f, UA %.4f, macro-F1 %.4f; confusion matrix: %s",
            suffix.replace("_", " "),
            stats["WA"],
            stats["UA"],
            stats["macro_F1"],
            png_path,
        )
