"""Manifests: reading a split's JSON or CSV file into the entries that the
screen (:mod:`speechbrain_turbo.screening`) then checks.

A malformed row that does not spoil the others (a line that is not UTF-8,
an overlong cell) becomes a :class:`RowProblem` for the screen to reject
and count; a file that cannot be read as a whole (no such file, a missing
column, an unclosed quote) stops with an error naming the file and line.

Authors
 * speechbrain-turbo contributors
"""

import codecs
import csv
import json
import os
import typing

from speechbrain_turbo.errors import InputError, MissingInputError

MANIFEST_COLUMNS = ("ID", "wav", "text", "label")
# A manifest cell longer than this is a bad entry (csv's own default limit).
MAX_CELL_CHARACTERS = 131072


class RowProblem(typing.NamedTuple):
    """What is wrong with the form of a manifest row (:func:`read_csv_rows`).

    ``kind`` is ``"not_utf8"``, ``"unclosed_quote"`` or ``"long_cell"``;
    ``str()`` gives ``"reason; fix"``.

    Example
    -------
    >>> str(RowProblem("long_cell", "a long cell", "shorten it"))
    'a long cell; shorten it'
    """

    kind: str
    reason: str
    fix: str

    def __str__(self):
        return f"{self.reason}; {self.fix}"


def read_manifest(path, data_root=""):
    """Reads a JSON or CSV manifest into entries to screen, in file order.

    JSON: ``{id: {"wav": ..., "text": ..., <label>: ...}}``, ``{data_root}``
    in ``wav`` replaced; a key that appears twice is kept twice (for the
    screen to report); ``"_not_utf8": true`` (a preparation's flag) becomes
    a :class:`RowProblem`. CSV (``.csv``): the header must hold ``ID,wav,text,
    label`` (other columns are kept), ``$data_root`` in ``wav`` replaced,
    as SpeechBrain's loaders do; a byte-order mark is dropped, and a row
    whose form is wrong but does not spoil the others (a line that is not
    valid UTF-8, an overlong cell) carries its :class:`RowProblem`
    (``_row_problem``) for the screen to reject rather than failing the
    whole file.

    Arguments
    ---------
    path : str
        The manifest.
    data_root : str
        Replaces the data root placeholder in ``wav``.

    Returns
    -------
    list of (str, str, dict)
        ``(id, where, entry)``; ``where`` names the file and the line (CSV)
        or the key (JSON) for error messages.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> with open(path, "w") as f:
    ...     print("ID,wav,text,label", file=f)
    ...     print("a,$data_root/a.wav,Hi.,joy", file=f)
    >>> [(i, e["wav"]) for i, _, e in read_manifest(path, "/data")]
    [('a', '/data/a.wav')]
    """
    # Not DynamicItemDataset.from_json / from_csv: the screen must see the
    # raw rows, a duplicated id or a line that is not UTF-8 included, which
    # those merge or refuse.
    if not path.endswith(".csv"):
        _check_manifest_exists(path)
        with open(path, encoding="utf-8") as f:
            pairs = json.load(f, object_pairs_hook=lambda items: items)
        entries = []
        for item_id, fields in pairs:
            entry = dict(fields)
            if isinstance(entry.get("wav"), str):
                entry["wav"] = entry["wav"].replace("{data_root}", data_root)
            # A preparation's flag (iemocap_prepare.py): the transcript's
            # line in the corpus was not valid UTF-8.
            if entry.pop("_not_utf8", False):
                entry["_row_problem"] = RowProblem(
                    "not_utf8",
                    "the transcript's line in the corpus is not valid UTF-8",
                    "save the transcription file as UTF-8",
                )
            entries.append((item_id, f"{path} entry {item_id!r}", entry))
        return entries

    columns, rows = read_csv_rows(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} (found "
            f"{', '.join(columns) or 'none'}). An audio-text manifest "
            "needs the header ID,wav,text,label (optional: duration, "
            "speaker)"
        )
    entries = []
    for first, end, row, problem in rows:
        lines = f"line {first}" if end == first else f"lines {first}-{end}"
        kind = None if problem is None else problem.kind
        if kind == "unclosed_quote":
            # The rows it swallowed cannot be counted, let alone used.
            raise InputError(f"{path} {lines}: {problem}")
        entry = {k: v for k, v in row.items() if k is not None}
        entry["wav"] = (entry["wav"] or "").replace("$data_root", data_root)
        if problem is not None:
            entry["_row_problem"] = problem
        item_id = entry.pop("ID") or ""
        entries.append((item_id, f"{path} {lines} (ID {item_id!r})", entry))
    return entries


def read_csv_rows(path):
    r"""A CSV manifest's header and rows, each with its lines and any
    problem of its form, for the manifests of training and of ``classify``.

    Refused outright: a header that names a column twice. Flagged per row
    (the reason and what to do): a line that is not valid UTF-8, a cell
    longer than ``MAX_CELL_CHARACTERS``, and a row that runs over several
    lines because a quote is not closed (it would swallow the rows after
    it).

    Arguments
    ---------
    path : str
        The CSV file.

    Returns
    -------
    header : list of str
        The column names.
    rows : list of (int, int, dict, RowProblem or None)
        The row's first and last line, the row as ``csv.DictReader`` gives
        it, and its :class:`RowProblem` or None.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write('ID,wav\na,"a.wav\nb,b.wav\n')
    >>> header, rows = read_csv_rows(path)
    >>> rows[0][:2], rows[0][3].kind
    ((2, 3), 'unclosed_quote')
    """
    lines, not_utf8 = decode_csv_lines(path)
    limit = csv.field_size_limit()
    # Long cells are read, then flagged: csv's own limit would stop the
    # whole file at the first one.
    csv.field_size_limit(2**31 - 1)
    try:
        reader = csv.DictReader(lines)
        header = reader.fieldnames or []
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise InputError(
                f"{path}: the header names {', '.join(repeated)} more than "
                "once; keep one column of each name"
            )
        rows, end = [], reader.line_num
        for row in reader:
            first, end = end + 1, reader.line_num
            cells = [v for v in row.values() if isinstance(v, str)]
            cells += row.get(None) or []
            problem = None
            if any(n in not_utf8 for n in range(first, end + 1)):
                problem = RowProblem(
                    "not_utf8",
                    "the line is not valid UTF-8",
                    "save the manifest as UTF-8",
                )
            elif end > first and any("\n" in c or "\r" in c for c in cells):
                problem = RowProblem(
                    "unclosed_quote",
                    f"a quote opened in line {first} is not closed before "
                    f"line {end}, which merges {end - first + 1} lines into "
                    "one row",
                    "close the quote",
                )
            elif any(len(c) > MAX_CELL_CHARACTERS for c in cells):
                longest = max(len(c) for c in cells)
                problem = RowProblem(
                    "long_cell",
                    f"a cell of {longest:,} characters, more than "
                    f"{MAX_CELL_CHARACTERS:,}",
                    "shorten it",
                )
            rows.append((first, end, row, problem))
    finally:
        csv.field_size_limit(limit)
    return header, rows


def decode_csv_lines(path):
    r"""A CSV file's lines, decoded as UTF-8 one by one.

    A byte-order mark (as spreadsheet programs write) is dropped; a line that
    is not valid UTF-8 is decoded with replacement characters and its number
    returned, so that one bad line does not lose the whole file.

    Arguments
    ---------
    path : str
        The CSV file.

    Returns
    -------
    lines : list of str
        The lines, with their line ends (for ``csv.reader``).
    not_utf8 : set of int
        The 1-based numbers of the lines that were not valid UTF-8.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"\xef\xbb\xbfID,wav\na,\xff.wav\n")
    >>> decode_csv_lines(path)
    (['ID,wav\n', 'a,\ufffd.wav\n'], {2})
    """
    _check_manifest_exists(path)
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    lines, not_utf8 = [], set()
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(raw.decode("utf-8", errors="replace"))
            not_utf8.add(number)
    return lines, not_utf8


def _check_manifest_exists(path):
    """Stops with a one-line error when the manifest ``path`` is not a file."""
    if not os.path.isfile(path):
        raise MissingInputError(
            f"{path}: no such manifest file. Check the path given (e.g. "
            "--train_csv, --valid_csv, --test_csv or --manifest), or run the "
            "preparation that writes it"
        )
