"""A run's reports: what TurboBrain logs and writes at each stage.

:class:`StageReports` gives a validation or test stage its metrics
(:mod:`speechbrain_turbo.metrics`) and writes the files a run leaves:
``history.jsonl``, training curves, test metrics, per-utterance
predictions and confusion matrices.

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
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.metrics import (
    alignment,
    classification_metrics,
    uniformity,
)

logger = get_logger(__name__)

# The curves are redrawn after an epoch only when the last drawing is this
# old (and always after the last epoch): drawing takes about a second,
# as long as a whole epoch of a small model.
CURVES_INTERVAL_S = 60.0


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
        :class:`speechbrain_turbo.models.ModalityFusion`: learned with modality
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

    def on_fit_batch_start(self, batch, should_step):
        """Counts the training batch's padding, then runs the Brain's hook.

        Arguments
        ---------
        batch : PaddedBatch
            The training batch.
        should_step : bool
            Whether the optimizers step after this batch.
        """
        self._count_padding(batch)
        super().on_fit_batch_start(batch, should_step)

    def _count_padding(self, batch):
        """Adds a training batch's audio samples, and how many of them are
        padding, to the epoch's counts (``padding`` in the train stats).
        """
        audio = getattr(batch, "audio", None)
        if audio is None:
            return
        rows, longest = audio.data.shape[:2]
        real = float(audio.lengths.sum()) * longest
        self.audio_samples += rows * longest
        self.padded_samples += rows * longest - real
