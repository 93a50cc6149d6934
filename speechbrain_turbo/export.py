"""Export a finished experiment as a self-contained model folder.

The folder holds what :class:`speechbrain_turbo.inference.TurboClassifier`
loads: ``hyperparams.yaml`` (the modules of the training hyperparameters,
as SpeechBrain resolved them, plus ``modules`` and a ``pretrainer``), the
weights of the best checkpoint (by validation UA), the label encoder and the
text tokenizer.

Authors
 * speechbrain-turbo contributors
"""

import csv
import glob
import io
import json
import os
import shutil
import tempfile

from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from speechbrain.utils.logger import get_logger

from speechbrain_turbo.checkpoints import FallbackCheckpointer

logger = get_logger(__name__)

SKIPPED_MODULES = ("turbo_loss",)
CLASS_COUNT_TAG = "!apply:speechbrain_turbo.dataio.count_labels"
HF_ENCODER_TAG = "!new:speechbrain_turbo.hf_encoders.HF"


def best_checkpoint(save_folder, max_key="UA"):
    """The checkpoint with the highest validation ``max_key``.

    Arguments
    ---------
    save_folder : str
        The experiment's ``save`` folder.
    max_key : str
        The checkpoint meta key to maximise.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        The selected checkpoint.
    """
    checkpoint = FallbackCheckpointer(save_folder).find_checkpoint(
        max_key=max_key
    )
    if checkpoint is None:
        raise FileNotFoundError(
            f"No checkpoint with a validation {max_key} in {save_folder}: "
            "is the experiment finished (or at least one epoch done)?"
        )
    return checkpoint


def _children(node):
    """The direct children of a parsed YAML node."""
    if isinstance(node, dict):
        return list(node.values())
    if isinstance(node, list):
        return list(node)
    return []


def _needed_keys(tree, roots):
    """Top-level keys reachable from ``roots`` through shared YAML nodes."""
    # Shared nodes are containers or tagged objects (plain scalars such as
    # small ints are shared by Python itself, not by the YAML).
    owner = {
        id(value): key
        for key, value in tree.items()
        if isinstance(value, (dict, list)) or _tag_of(value)
    }
    needed, stack = [], list(roots)
    while stack:
        key = stack.pop()
        if key in needed:
            continue
        needed.append(key)
        nodes = [tree[key]]
        while nodes:
            node = nodes.pop()
            for child in _children(node):
                if id(child) in owner and owner[id(child)] != key:
                    stack.append(owner[id(child)])
                else:
                    nodes.append(child)
    return [key for key in tree if key in needed]


def _tag_of(node):
    """The YAML tag of a parsed node (empty when it has none)."""
    tag = getattr(node, "tag", None)
    return getattr(tag, "value", tag) or ""


EXPORT_MARK = "# Exported by speechbrain_turbo.export"


def export_model(
    experiment_folder, model_folder, max_key="UA", asr_hub=None, examples=0
):
    """Writes a model folder from an experiment's best checkpoint.

    The folder is whole or absent: it is written beside its destination
    and renamed into place at the end, so a failed export leaves what was
    there before. It may replace an earlier export (whole: nothing of the
    old one stays), never another folder, and never the experiment folder
    or a folder inside or around it.

    Arguments
    ---------
    experiment_folder : str
        A recipe's ``output_folder`` (holds ``hyperparams.yaml`` and
        ``save/``).
    model_folder : str
        Where the model goes: absent, empty, or an earlier export.
    max_key : str
        Validation metric that selects the checkpoint.
    asr_hub : str, optional
        A Whisper model (hub name or folder) that transcribes audio given
        without text at inference.
    examples : int
        How many test utterances (audio and transcript) to copy into the
        folder's ``examples/``, for the web page's one-click examples. They
        are the corpus's recordings: leave 0 where its licence forbids
        passing them on with the model.

    Returns
    -------
    dict
        The exported checkpoint's meta (its validation scores).
    """
    if examples < 0:
        raise ValueError(f"examples must be 0 or more, got {examples}")
    source = os.path.realpath(experiment_folder)
    target = os.path.realpath(model_folder)
    if os.path.commonpath([source, target]) in (source, target):
        raise ValueError(
            f"The model folder {model_folder} must lie outside the run "
            f"folder {experiment_folder} (and not hold it): export to a new "
            "folder"
        )
    if not os.path.exists(os.path.join(experiment_folder, "hyperparams.yaml")):
        raise FileNotFoundError(
            f"{experiment_folder} holds no hyperparams.yaml: give the output "
            "folder of a training run"
        )
    if os.path.exists(target) and not _replaceable(target):
        raise FileExistsError(
            f"{model_folder} exists and is not a model folder written by "
            "export: give a new or empty folder"
        )
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    partial = tempfile.mkdtemp(prefix=".export-", dir=parent)
    os.chmod(partial, new_file_mode(0o777))  # mkdtemp's folder is private
    try:
        meta = _write_model_folder(
            experiment_folder, partial, max_key, asr_hub, examples
        )
        # Swap in the new folder; the old one goes only once it is in place.
        previous = None
        if os.path.exists(target):
            previous = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
            os.rename(target, os.path.join(previous, "model"))
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    logger.info("Exported %s to %s", experiment_folder, model_folder)
    return meta


def written_by_export(hparams_path):
    """Whether ``export`` wrote this hyperparams file (its first line).

    Arguments
    ---------
    hparams_path : str
        A ``hyperparams.yaml``.

    Returns
    -------
    bool
        False also when it cannot be read.

    Example
    -------
    >>> written_by_export("no/such/hyperparams.yaml")
    False
    """
    try:
        with open(hparams_path, encoding="utf-8") as f:
            return f.readline().startswith(EXPORT_MARK)
    except (OSError, UnicodeDecodeError):
        return False


def new_file_mode(base):
    """``base`` (0o666 for files, 0o777 for folders) less the umask: the
    mode a file or folder created normally gets, for one made private by
    ``tempfile``.

    Arguments
    ---------
    base : int
        The mode before the umask.

    Returns
    -------
    int
        The mode.

    Example
    -------
    >>> previous = os.umask(0o022)
    >>> oct(new_file_mode(0o666))
    '0o644'
    >>> _ = os.umask(previous)
    """
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def _replaceable(folder):
    """Whether an existing folder may be replaced by an export: an empty
    folder, or one whose hyperparams.yaml an earlier export wrote.
    """
    if not os.path.isdir(folder):
        return False
    return not os.listdir(folder) or written_by_export(
        os.path.join(folder, "hyperparams.yaml")
    )


def _write_model_folder(
    experiment_folder, model_folder, max_key, asr_hub, examples
):
    """Writes the model folder's files into ``model_folder`` (see
    :func:`export_model`); returns the checkpoint's meta.
    """
    yaml = YAML()
    with open(
        os.path.join(experiment_folder, "hyperparams.yaml"), encoding="utf-8"
    ) as f:
        tree = yaml.load(f)
    save_folder = os.path.join(experiment_folder, "save")
    checkpoint = best_checkpoint(save_folder, max_key=max_key)
    modules = [name for name in tree["modules"] if name not in SKIPPED_MODULES]
    # The duration limit travels with the model: the serving page refuses
    # what training would have skipped; the label names are what it shows.
    roots = ["sample_rate", "modalities", "max_audio_seconds", "label_names"]
    roots += modules
    keys = _needed_keys(tree, [key for key in roots if key in tree])
    os.makedirs(model_folder, exist_ok=True)

    # Weights: every needed key that has a checkpoint file (the modules and,
    # e.g., the audio normaliser's statistics).
    loadables = []
    for key in keys:
        source = os.path.join(checkpoint.path, f"{key}.ckpt")
        if os.path.exists(source):
            shutil.copy(source, os.path.join(model_folder, f"{key}.ckpt"))
            loadables.append(key)
    shutil.copy(
        os.path.join(save_folder, "label_encoder.txt"),
        os.path.join(model_folder, "label_encoder.ckpt"),
    )
    num_classes = _count_classes(os.path.join(save_folder, "label_encoder.txt"))

    for key in keys:
        if _tag_of(tree[key]).startswith(HF_ENCODER_TAG):
            _export_hf_encoder(key, tree[key], experiment_folder, model_folder)
        elif _tag_of(tree[key]).startswith(CLASS_COUNT_TAG):
            # A classifier sized from the training manifest keeps its size,
            # not the manifest: the number replaces the node everywhere it
            # is referenced.
            _replace_node(tree, tree[key], num_classes)

    selected = {key: tree[key] for key in keys}
    text = io.StringIO()
    yaml.dump(selected, text)
    body = text.getvalue()

    tokenizer = _export_tokenizer(tree, save_folder, model_folder)
    lines = [
        f"{EXPORT_MARK} from",
        f"# {os.path.abspath(experiment_folder)}",
        f"# checkpoint {os.path.basename(checkpoint.path)}: "
        + ", ".join(
            f"valid {k} {v:.4f}"
            for k, v in checkpoint.meta.items()
            if isinstance(v, float) and k in ("WA", "UA", "macro_F1")
        ),
        "# Load with speechbrain_turbo.inference.TurboClassifier.",
        "",
        "# The folder holding this file (set by TurboClassifier).",
        "model_dir: !PLACEHOLDER",
        "",
        body.rstrip("\n"),
        "",
        "label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder",
        *tokenizer,
        *_asr_lines(asr_hub, model_folder),
        "",
        "modules:",
        *[f"    {name}: !ref <{name}>" for name in modules],
        "",
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer",
        "    loadables:",
        *[f"        {key}: !ref <{key}>" for key in loadables],
        "        label_encoder: !ref <label_encoder>",
        "",
    ]
    with open(
        os.path.join(model_folder, "hyperparams.yaml"), "w", encoding="utf-8"
    ) as f:
        f.write("\n".join(lines))
    if examples:
        _export_examples(experiment_folder, model_folder, examples)
    logger.info("Exporting checkpoint %s", checkpoint.path)
    return dict(checkpoint.meta)


def _export_examples(experiment_folder, model_folder, count):
    """Copies the first ``count`` screened test utterances (audio and
    transcript) into ``<model_folder>/examples/`` and lists them in
    ``examples.csv`` (``file,text``).
    """
    from speechbrain_turbo.dataio import file_stem
    from speechbrain_turbo.inference import EXAMPLES_FILE, EXAMPLES_FOLDER

    screened = os.path.join(experiment_folder, "test_screened.json")
    if not os.path.exists(screened):
        raise FileNotFoundError(
            f"{screened} is missing: examples come from the test set of a "
            "finished run (export without --examples otherwise)"
        )
    with open(screened, encoding="utf-8") as f:
        entries = list(json.load(f).items())[:count]
    missing = [e["wav"] for _, e in entries if not os.path.isfile(e["wav"])]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} example file(s) of {screened} are missing, e.g. "
            f"{missing[0]} (a relative path is relative to the folder the "
            "run was started from: export from there)"
        )
    folder = os.path.join(model_folder, EXAMPLES_FOLDER)
    os.makedirs(folder, exist_ok=True)
    rows = []
    for item_id, entry in entries:
        extension = os.path.splitext(entry["wav"])[1].lstrip(".")
        name = file_stem(item_id)
        if extension:
            name += f".{file_stem(extension)}"
        shutil.copy(entry["wav"], os.path.join(folder, name))
        rows.append(
            {"file": f"{EXAMPLES_FOLDER}/{name}", "text": entry["text"]}
        )
    with open(
        os.path.join(model_folder, EXAMPLES_FILE),
        "w",
        newline="",
        encoding="utf-8",
    ) as f:
        writer = csv.DictWriter(f, fieldnames=["file", "text"])
        writer.writeheader()
        writer.writerows(rows)


def _count_classes(label_encoder_file):
    """Number of labels in a saved CategoricalEncoder."""
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.load(label_encoder_file)
    return len(encoder)


def _replace_node(tree, old, new):
    """Replaces every reference to the parsed node ``old`` by ``new``."""
    containers = [tree]
    while containers:
        container = containers.pop()
        slots = (
            container.items()
            if isinstance(container, dict)
            else enumerate(container)
        )
        for slot, child in list(slots):
            if child is old:
                container[slot] = new
            elif isinstance(child, (dict, list)):
                containers.append(child)


def _export_tokenizer(tree, save_folder, model_folder):
    """Copies a SentencePiece model; returns the YAML lines that load it.

    A pretrained text encoder (``text_model``) carries its own tokenizer
    and needs nothing here.
    """
    if "tokenizer" not in tree:
        return []
    models = glob.glob(os.path.join(save_folder, "tokenizer", "*.model"))
    if len(models) != 1:
        raise FileNotFoundError(
            f"Expected one SentencePiece model in {save_folder}/tokenizer, "
            f"found {models}"
        )
    shutil.copy(models[0], os.path.join(model_folder, "tokenizer.model"))
    return [
        "",
        "text_tokenizer: !new:sentencepiece.SentencePieceProcessor",
        "    model_file: !ref <model_dir>/tokenizer.model",
    ]


def _asr_lines(asr_hub, model_folder):
    """YAML lines of the optional Whisper model for missing transcripts; a
    local Whisper folder is copied into ``<model_folder>/asr``, so that the
    model folder works wherever it is moved.
    """
    if asr_hub is None:
        return []
    source = asr_hub
    if os.path.isdir(asr_hub):
        shutil.copytree(asr_hub, os.path.join(model_folder, "asr"))
        source = "!ref <model_dir>/asr"
    return [
        "",
        "# Transcribes audio given without text (TurboClassifier).",
        f"asr_hub: {source}",
        "asr_model: !new:speechbrain.integrations.huggingface.whisper.Whisper",
        "    source: !ref <asr_hub>",
        "    save_path: !ref <model_dir>/asr",
        "    freeze: True",
    ]


def _export_hf_encoder(key, node, experiment_folder, model_folder):
    """Copies a HuggingFace encoder's files into ``<model_folder>/<key>``.

    The architecture, tokenizer or feature extractor come from there at
    load time (the fine-tuned weights from the checkpoint), so the model
    folder needs no download. The node's ``source`` and ``save_path`` are
    pointed at the copy.
    """
    source, save_path = str(node["source"]), str(node["save_path"])
    sources = [source] if os.path.isdir(source) else []
    if not sources:
        sources = _cached_snapshots(key, source, save_path)
    target = os.path.join(model_folder, key)
    shutil.rmtree(target, ignore_errors=True)
    for folder in sources:
        shutil.copytree(folder, target, dirs_exist_ok=True)
    node["source"] = TaggedScalar(value=f"<model_dir>/{key}", tag="!ref")
    node["save_path"] = TaggedScalar(value="<model_dir>", tag="!ref")


def _cached_snapshots(key, source, save_path):
    """The cached files of a model trained from a hub name.

    SpeechBrain caches a hub model's weights and config under the hparams'
    ``save_path`` (relative paths are relative to the folder the training
    ran in, so the export must run there too) and its tokenizer or feature
    extractor in the global HuggingFace cache. Both snapshots of the
    revision ``refs/main`` names are returned (global first), when present.
    """
    from huggingface_hub import snapshot_download

    snapshots = []
    for cache_dir in (None, os.path.abspath(save_path)):
        try:
            snapshots.append(
                snapshot_download(
                    source, cache_dir=cache_dir, local_files_only=True
                )
            )
        except Exception:  # not in this cache (the error type varies)
            continue
    if not snapshots:
        raise FileNotFoundError(
            f"{key}: {source!r} is neither a folder nor in the HuggingFace "
            f"caches (the global one, and save_path "
            f"{os.path.abspath(save_path)}). Run the export from the folder "
            "the training ran in, or download the model and pass its folder "
            "as source."
        )
    return snapshots
