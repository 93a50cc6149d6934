"""Helpers shared by the corpus preparation scripts of the recipes.

A preparation stores the options it was called with next to the manifests
it writes; the next call reuses the manifests only when every file is there
and the options are equal, so changing a split option re-creates the split
(upstream SpeechBrain preparations skip whenever the files exist).

Authors
 * speechbrain-turbo contributors
"""

import csv
import json
import os
from collections import Counter

from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

# The manifests every preparation writes, ``<split>.csv`` or ``.json``.
SPLITS = ("train", "valid", "test")


def load_matching_summary(save_folder, opt_file, options, outputs):
    """Returns the stored summary if a previous preparation can be reused.

    Reuse needs every file of ``outputs`` in ``save_folder`` and an options
    file equal to ``options``; otherwise the reason for preparing again is
    logged and None returned.

    Arguments
    ---------
    save_folder : str
        Folder of the manifests and of the options file.
    opt_file : str
        Name of the options file in ``save_folder``.
    options : dict
        The options of the current call (JSON-serialisable).
    outputs : list of str
        The file names the preparation writes in ``save_folder``.

    Returns
    -------
    summary : dict or None
        The summary stored by the previous preparation, or None.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> load_matching_summary(folder, "opts.json", {"a": 1}, [])
    >>> write_summary(folder, "opts.json", {"a": 1}, {"n": 3})
    >>> load_matching_summary(folder, "opts.json", {"a": 1}, [])
    {'n': 3}
    >>> load_matching_summary(folder, "opts.json", {"a": 2}, [])
    """
    opt_path = os.path.join(save_folder, opt_file)
    if not os.path.isfile(opt_path):
        logger.info("No previous preparation in %s.", save_folder)
        return None
    missing = [
        name
        for name in outputs
        if not os.path.isfile(os.path.join(save_folder, name))
    ]
    if missing:
        logger.info("Preparing again: %s missing in %s.", missing, save_folder)
        return None
    try:
        with open(opt_path, encoding="utf-8") as f:
            stored = json.load(f)
        old_options, summary = stored["options"], stored["summary"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.info("Preparing again: cannot read %s (%s).", opt_path, err)
        return None
    if old_options != options:
        changed = {
            key: (old_options.get(key), options.get(key))
            for key in sorted(set(old_options) | set(options))
            if old_options.get(key) != options.get(key)
        }
        logger.info("Preparing again: options changed (old, new): %s.", changed)
        return None
    return summary


def reusable_split_manifests(save_folder, opt_file, options, corpus):
    """The summary of the CSV manifests of :data:`SPLITS` in ``save_folder``
    when a previous call with the same options wrote them, else None.

    Arguments
    ---------
    save_folder : str
        Folder of the manifests and of the options file.
    opt_file : str
        Name of the options file in ``save_folder``.
    options : dict
        The options of the current call.
    corpus : str
        The corpus' name, for the log.

    Returns
    -------
    summary : dict or None
        The stored summary with ``reused`` True, or None.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> rows = {split: [] for split in SPLITS}
    >>> _ = write_split_manifests(folder, "o.json", {}, rows, ["ID"], {})
    >>> reusable_split_manifests(folder, "o.json", {}, "Corpus")["reused"]
    True
    >>> reusable_split_manifests(folder, "o.json", {"a": 1}, "Corpus")
    """
    outputs = [f"{split}.csv" for split in SPLITS]
    summary = load_matching_summary(save_folder, opt_file, options, outputs)
    if summary is None:
        return None
    logger.info("%s manifests in %s match the options.", corpus, save_folder)
    return {**summary, "reused": True}


def write_summary(save_folder, opt_file, options, summary):
    """Stores the options and summary of a finished preparation, atomically.

    Call it after every manifest is written: a preparation interrupted
    before this point is redone by the next call.

    Arguments
    ---------
    save_folder : str
        Folder of the manifests.
    opt_file : str
        Name of the options file in ``save_folder``.
    options : dict
        The options of the call.
    summary : dict
        What the preparation found (counts, splits...).

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> write_summary(tempfile.mkdtemp(), "opts.json", {}, {})
    """
    write_json(
        {"options": options, "summary": summary},
        os.path.join(save_folder, opt_file),
    )


def write_split_manifests(
    save_folder, opt_file, options, splits, columns, found
):
    """Writes one CSV manifest per split, then the options and the summary.

    Arguments
    ---------
    save_folder : str
        Folder of the manifests and of the options file.
    opt_file : str
        Name of the options file in ``save_folder``.
    options : dict
        The options of the call (see :func:`load_matching_summary`).
    splits : dict
        ``{split: rows}``; each row a dict with at least ``columns`` and
        ``label``; written to ``<save_folder>/<split>.csv``.
    columns : sequence of str
        The manifests' columns, in order.
    found : dict
        What else the preparation found, stored in the summary.

    Returns
    -------
    dict
        The summary: ``counts`` ({split: {label: int}}), then ``found``.

    Example
    -------
    >>> import tempfile
    >>> rows = [{"ID": "a", "label": "x"}, {"ID": "b", "label": "x"}]
    >>> folder = tempfile.mkdtemp()
    >>> write_split_manifests(
    ...     folder, "opts.json", {}, {"train": rows}, ["ID", "label"], {}
    ... )
    {'counts': {'train': {'x': 2}}}
    """
    os.makedirs(save_folder, exist_ok=True)
    forget_summary(save_folder, opt_file)
    for split, rows in splits.items():
        write_csv(rows, os.path.join(save_folder, f"{split}.csv"), columns)
    summary = {
        "counts": {
            split: dict(sorted(Counter(row["label"] for row in rows).items()))
            for split, rows in splits.items()
        },
        **found,
    }
    write_summary(save_folder, opt_file, options, summary)
    return summary


def forget_summary(save_folder, opt_file):
    """Removes a stored options file before manifests are rewritten, so that
    a half-written set is never reused.

    Arguments
    ---------
    save_folder : str
        Folder of the manifests.
    opt_file : str
        Name of the options file in ``save_folder``.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> forget_summary(tempfile.mkdtemp(), "opts.json")
    """
    opt_path = os.path.join(save_folder, opt_file)
    if os.path.exists(opt_path):
        os.remove(opt_path)


def write_json(obj, path):
    r"""Writes a JSON file atomically (to a temporary file, then renamed).

    Arguments
    ---------
    obj : object
        JSON-serialisable content.
    path : str
        Destination file.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.json")
    >>> write_json({"x": 1}, path)
    >>> open(path).read()
    '{\n  "x": 1\n}'
    """
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp_path, path)


def write_csv(rows, path, columns):
    """Writes dict rows as a CSV manifest, atomically.

    Arguments
    ---------
    rows : list of dict
        One dict per row, holding at least ``columns``.
    path : str
        Destination file.
    columns : list of str
        The header, in order.

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> write_csv([{"ID": "u1", "label": "sad"}], path, ["ID", "label"])
    >>> open(path).read().splitlines()
    ['ID,label', 'u1,sad']
    """
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp_path, path)
