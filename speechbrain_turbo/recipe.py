"""The steps every Turbo recipe runs once its manifests exist.

A recipe's ``train.py`` parses its arguments, loads its hparams
(:func:`load_hparams`), starts the
experiment folder (:func:`start_experiment`), prepares its corpus, then
calls :func:`train_and_test`: screening, tokenizer and datasets, training
with the best checkpoint chosen on validation UA, the test, and the test
again without each modality of ``test_without``.

Authors
 * speechbrain-turbo contributors
"""

import os

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.batching import train_loader_options
from speechbrain_turbo.brain import TurboBrain
from speechbrain_turbo.dataio import datasets_from_hparams
from speechbrain_turbo.errors import InputError, MissingInputError
from speechbrain_turbo.experiment import (
    check_override_keys,
    check_run_identity,
    lock_output_folder,
    write_run_record,
)
from speechbrain_turbo.manifests import read_manifest

logger = get_logger(__name__)


def load_hparams(hparams_file, overrides):
    """Loads a recipe's hparams file with the command-line overrides, after
    checking that every override names a key of the file.

    Arguments
    ---------
    hparams_file : str
        The recipe's hparams file.
    overrides : str
        The command-line overrides (``sb.parse_arguments``' third result).

    Returns
    -------
    dict
        The loaded hyperparameters.
    """
    if not os.path.isfile(hparams_file):
        raise MissingInputError(
            f"{hparams_file}: no such hparams file (the recipe's are in its "
            "hparams/ folder, e.g. hparams/turbo.yaml)"
        )
    check_override_keys(hparams_file, overrides)
    with open(hparams_file, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, overrides)


def start_experiment(hparams, hparams_file, overrides):
    """Creates the output folder, refusing one made with other settings or
    in use by another process.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters (``output_folder``).
    hparams_file : str
        The recipe's hparams file, copied into the folder.
    overrides : str
        The command-line overrides, recorded with it.

    Returns
    -------
    None
    """
    # One process trains in a folder at a time (under DDP: the main one
    # holds the lock for all).
    if sb.utils.distributed.if_main_process():
        lock_output_folder(hparams["output_folder"])
    # Never resume another configuration's checkpoints from this folder.
    run_on_main(
        check_run_identity,
        args=[hparams["output_folder"], hparams_file, overrides],
    )
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )


def train_and_test(hparams, run_opts, manifests, label_key):
    """Trains a :class:`TurboBrain` on the manifests and tests it.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters of a Turbo recipe.
    run_opts : dict
        SpeechBrain's run options (device, DDP, precision...).
    manifests : dict
        ``train``, ``valid`` and ``test`` manifest paths (JSON or CSV).
    label_key : str
        The manifests' label field.

    Returns
    -------
    TurboBrain
        The trained brain, its best checkpoint loaded.
    """
    # Packages, code revision and manifest checksums, for reproduction.
    run_on_main(write_run_record, args=[hparams["output_folder"], manifests])
    datasets = datasets_from_hparams(hparams, manifests, label_key=label_key)
    num_classes = len(hparams["label_encoder"])
    if num_classes != hparams["out_n_neurons"]:
        raise InputError(
            f"The screened training set has {num_classes} classes but "
            f"out_n_neurons is {hparams['out_n_neurons']}"
            + _lost_labels(hparams, manifests["train"], label_key)
            + f": set --out_n_neurons={num_classes} or fix the manifest"
        )
    hparams["label_encoder"].expect_len(num_classes)

    brain = TurboBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=command_line_checkpoint_interval(hparams, run_opts),
        checkpointer=hparams["checkpointer"],
    )
    # Sorted by duration, evaluation batches hold utterances of similar
    # length (little padding); shards under DDP stay sorted.
    for split in ("valid", "test"):
        datasets[split] = datasets[split].filtered_sorted(sort_key="duration")
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=train_loader_options(hparams, datasets["train"]),
        valid_loader_kwargs=hparams["valid_dataloader_options"],
    )
    brain.evaluate(
        datasets["test"],
        max_key="UA",
        test_loader_kwargs=hparams["test_dataloader_options"],
    )
    # How the model copes without a modality (e.g. no transcript).
    for missing in hparams["test_without"]:
        if missing in hparams["modalities"] and len(hparams["modalities"]) > 1:
            brain.evaluate_without(
                [missing],
                datasets["test"],
                max_key="UA",
                test_loader_kwargs=hparams["test_dataloader_options"],
            )
    brain.leave_process_group()
    return brain


def command_line_checkpoint_interval(hparams, run_opts):
    """Lets a checkpoint interval given on the command line replace the
    other kind set in the hparams file.

    SpeechBrain stops when both ``ckpt_interval_minutes`` and
    ``ckpt_interval_steps`` are set; with ``--ckpt_interval_steps`` on the
    command line and ``ckpt_interval_minutes`` in the file (or the reverse),
    the command line wins and the log says so.

    Arguments
    ---------
    hparams : dict
        The loaded hyperparameters.
    run_opts : dict
        SpeechBrain's run options from the command line.

    Returns
    -------
    dict
        The run options to give the Brain.

    Example
    -------
    >>> command_line_checkpoint_interval(
    ...     {"ckpt_interval_minutes": 15}, {"ckpt_interval_steps": 100}
    ... )
    {'ckpt_interval_steps': 100, 'ckpt_interval_minutes': 0}
    """
    run_opts = dict(run_opts)
    for given, other in (
        ("ckpt_interval_steps", "ckpt_interval_minutes"),
        ("ckpt_interval_minutes", "ckpt_interval_steps"),
    ):
        from_file = hparams.get(other) or 0
        if (run_opts.get(given) or 0) > 0 and other not in run_opts:
            if from_file > 0:
                logger.info(
                    "--%s=%s on the command line replaces %s: %s of the "
                    "hparams file.",
                    given,
                    run_opts[given],
                    other,
                    from_file,
                )
                run_opts[other] = 0
    return run_opts


def _lost_labels(hparams, train_manifest, label_key):
    """Names the training labels that screening removed every example of
    (``on_bad_input: skip``), for the class-count error.
    """
    listed = {
        entry.get(label_key)
        for _, _, entry in read_manifest(train_manifest, hparams["data_folder"])
    }
    kept = set(hparams["label_encoder"].lab2ind)
    lost = sorted(str(label) for label in listed - kept if label)
    if not lost:
        return ""
    return (
        f" (every training example of {lost} was left out as a bad input, "
        f"see {hparams['output_folder']}/rejects.csv)"
    )
