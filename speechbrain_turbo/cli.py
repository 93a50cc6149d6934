"""The ``speechbrain-turbo`` command: export a trained model, classify audio.

    speechbrain-turbo export EXPERIMENT_FOLDER MODEL
    speechbrain-turbo classify --model MODEL --audio a.wav [--text "..."]
    speechbrain-turbo classify --model MODEL --manifest in.csv --output o.csv
    speechbrain-turbo serve --model MODEL [--host 127.0.0.1] [--port 7860]

A manifest is a CSV with the columns ``ID`` and ``wav`` and, optionally,
``text`` (an empty cell means no transcript); a relative ``wav`` path is
relative to the manifest's folder. The output CSV has ``ID``,
``label``, ``score``, ``text`` (``given``, ``asr``: transcribed by the
model's Whisper, or ``absent``: audio only) and one ``prob_<label>`` column
per class. A file that cannot be used (missing, unreadable, truncated, empty,
shorter than 0.1 s, longer than the model's ``max_audio_seconds``, with samples
that are not finite) is named on stderr with the reason; with a manifest every
other row is still classified, the bad ones (also: lines that are not UTF-8,
rows with too few or too many fields, repeated IDs) go to
``<output>.rejects.csv`` with their line numbers, and the command exits with
status 1. The output is never the manifest itself, and is replaced whole or not
at all.
``serve`` opens a web page to try the model (see :mod:`speechbrain_turbo.app`;
needs ``pip install -e ".[app]"``).

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import os
import sys
import tempfile

from tqdm import tqdm

from speechbrain_turbo.export import export_model, new_file_mode


def _classifier(model_folder, device):
    """Loads the model (imported here: export needs no inference stack)."""
    from speechbrain_turbo.inference import ModelFolderError, TurboClassifier

    try:
        return TurboClassifier.from_hparams(
            model_folder, run_opts={"device": device}
        )
    except ModelFolderError as error:
        raise SystemExit(f"speechbrain-turbo: {error}") from None


def classify_one(args):
    """Prints the label and probabilities of one file."""
    model = _classifier(args.model, args.device)
    wav, problem = model.screened_file(args.audio)
    if problem is not None:
        raise SystemExit(f"speechbrain-turbo classify: {': '.join(problem)}")
    probabilities, score, _, labels = model.classify_batch(
        wav.unsqueeze(0), texts=[args.text], transcribe=not args.no_asr
    )
    print(f"label: {labels[0]}  score: {float(score[0]):.4f}")
    if model.text_sources[0] == "asr":
        print(f"text: asr: {model.transcripts[0]}")
    else:
        print(f"text: {model.text_sources[0]}")
    for label, p in zip(model.labels, probabilities[0].tolist()):
        print(f"  {label}: {p:.4f}")


def classify_manifest(args):
    """Classifies every row of a CSV manifest into an output CSV.

    The output and its rejects file are written to temporary files and
    renamed at the end, so an existing file is replaced whole or not at all.
    """
    manifest, output = _checked_paths(args.manifest, args.output)
    rows, rejects = _manifest_rows(manifest)
    model = _classifier(args.model, args.device)
    columns = ["ID", "label", "score", "text"]
    columns += [f"prob_{label}" for label in model.labels]
    results = []
    for line, row in tqdm(rows, desc="classify", unit="file"):
        wav, problem = model.screened_file(row["wav"])
        if problem is None:
            try:
                probabilities, score, _, labels = model.classify_batch(
                    wav.unsqueeze(0),
                    texts=[row.get("text") or None],
                    transcribe=not args.no_asr,
                )
            except Exception as error:  # a decoder's own error types
                problem = (f"cannot classify {row['wav']!r}: {error}",)
        if problem is not None:
            why = ": ".join(problem)
            rejects.append({"line": line, "ID": row["ID"], "why": why})
            continue
        results.append(
            [row["ID"], labels[0], f"{float(score[0]):.6f}"]
            + [model.text_sources[0]]
            + [f"{p:.6f}" for p in probabilities[0].tolist()]
        )
    rejects.sort(key=lambda reject: reject["line"])
    for reject in rejects:
        print(
            f"{manifest} line {reject['line']} (ID {reject['ID']!r}): "
            f"{reject['why']}",
            file=sys.stderr,
        )
    total = len(results) + len(rejects)
    _write_csv_atomically(output, [columns, *results])
    print(f"{len(results)} of {total} rows classified into {output}")
    rejects_path = f"{output}.rejects.csv"
    if not rejects:
        if os.path.exists(rejects_path):  # a previous run's
            os.remove(rejects_path)
        return
    _write_csv_atomically(
        rejects_path,
        [["line", "ID", "why"]]
        + [[r["line"], r["ID"], r["why"]] for r in rejects],
    )
    raise SystemExit(
        f"{len(rejects)} of {total} rows could not be classified, listed in "
        f"{rejects_path}"
    )


def _checked_paths(manifest, output):
    """The manifest's and the output's absolute paths, once the output is
    known not to overwrite the manifest and its folder exists (created if
    needed); a one-line exit otherwise.
    """
    manifest, output = os.path.abspath(manifest), os.path.abspath(output)
    if not os.path.isfile(manifest):
        raise SystemExit(f"speechbrain-turbo classify: no file {manifest}")
    for path in (output, f"{output}.rejects.csv"):
        if os.path.isdir(path):
            raise SystemExit(
                f"speechbrain-turbo classify: --output {path} is a folder; "
                "give a file name"
            )
        if os.path.exists(path) and os.path.samefile(path, manifest):
            raise SystemExit(
                f"speechbrain-turbo classify: {path} is the input manifest; "
                "write the results to another file"
            )
    try:
        os.makedirs(os.path.dirname(output), exist_ok=True)
    except OSError as error:
        raise SystemExit(
            f"speechbrain-turbo classify: cannot create the folder of "
            f"--output {output} ({error.strerror})"
        ) from None
    return manifest, output


def _manifest_rows(manifest):
    """``(line, row)`` of each usable manifest row and the rejects of the
    others: lines that are not UTF-8, rows with too few or too many fields,
    empty or repeated IDs. Relative ``wav`` paths are resolved against the
    manifest's folder.
    """
    from speechbrain_turbo.manifests import read_csv_rows

    try:
        header, csv_rows = read_csv_rows(manifest)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    missing = [c for c in ("ID", "wav") if c not in header]
    if missing:
        raise SystemExit(
            f"{manifest}: missing column(s) {', '.join(missing)} (found "
            f"{', '.join(header) or 'none'}); a manifest needs ID and wav "
            "(text optional)"
        )
    folder = os.path.dirname(manifest)
    rows, rejects, first_line = [], [], {}
    for line, _, row, problem in csv_rows:
        item_id = row.get("ID") or ""
        # DictReader puts extra fields under None, fills missing with None.
        extra = row.pop(None, None) or []
        fields = len(header) + len(extra)
        fields -= sum(value is None for value in row.values())
        # The first problem of the row: its form (read_csv_rows), then
        # its fields and ID.
        if problem is None and fields != len(header):
            problem = (
                f"{fields} field(s) where the header has {len(header)}; "
                "quote cells that hold commas"
            )
        if problem is None and not item_id.strip():
            problem = "empty ID"
        if problem is None and item_id in first_line:
            problem = f"duplicate ID (first at line {first_line[item_id]})"
        first_line.setdefault(item_id, line)
        if problem is not None:
            rejects.append({"line": line, "ID": item_id, "why": str(problem)})
            continue
        row["wav"] = os.path.join(folder, os.path.expanduser(row["wav"]))
        rows.append((line, row))
    return rows, rejects


def _write_csv_atomically(path, rows):
    """Writes rows to ``path`` through a temporary file in its folder."""
    handle, partial = tempfile.mkstemp(
        dir=os.path.dirname(path), prefix=".partial-", suffix=".csv"
    )
    try:
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        # mkstemp's file is private: give it the mode a new file gets.
        os.chmod(partial, new_file_mode(0o666))
        os.replace(partial, path)
    except BaseException:
        os.remove(partial)
        raise


def main(argv=None):
    """Parses the command line and runs the sub-command.

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(
        prog="speechbrain-turbo", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export", help="experiment folder -> self-contained model folder"
    )
    export.add_argument("experiment_folder")
    export.add_argument("model_folder")
    export.add_argument(
        "--asr_hub", help="Whisper model that transcribes missing text"
    )
    export.add_argument(
        "--examples",
        type=int,
        default=0,
        help="copy N test utterances as the web page's examples",
    )

    classify = commands.add_parser("classify", help="classify audio")
    classify.add_argument("--model", required=True, help="model folder")
    inputs = classify.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--audio", help="one audio file")
    inputs.add_argument("--manifest", help="CSV with ID,wav[,text]")
    classify.add_argument("--text", help="transcript of --audio")
    classify.add_argument("--output", help="output CSV (with --manifest)")
    classify.add_argument("--device", default="cpu")
    classify.add_argument(
        "--no_asr",
        action="store_true",
        help="without text, use the audio-only path even if the model has ASR",
    )

    page = commands.add_parser("serve", help="a web page to try a model")
    page.add_argument("--model", required=True, help="model folder")
    page.add_argument("--host", default="127.0.0.1")
    page.add_argument("--port", type=int, default=7860)
    page.add_argument("--device", default="cpu")

    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        from speechbrain_turbo.app import serve

        serve(args.model, host=args.host, port=args.port, device=args.device)
    elif args.command == "export":
        if args.examples < 0:
            parser.error(f"--examples must be 0 or more, got {args.examples}")
        try:
            meta = export_model(
                args.experiment_folder,
                args.model_folder,
                asr_hub=args.asr_hub,
                examples=args.examples,
            )
        except (ValueError, OSError) as error:
            raise SystemExit(f"speechbrain-turbo export: {error}") from None
        scores = {k: v for k, v in meta.items() if k in ("WA", "UA")}
        print(f"Exported to {args.model_folder} (validation {scores})")
    elif args.manifest:
        if not args.output:
            parser.error("--manifest needs --output")
        classify_manifest(args)
    else:
        classify_one(args)


if __name__ == "__main__":
    main()
