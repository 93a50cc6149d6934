"""The ``speechbrain-turbo`` command: export a trained model, classify audio.

    speechbrain-turbo export EXPERIMENT_FOLDER MODEL
    speechbrain-turbo classify --model MODEL --audio a.wav [--text "..."]
    speechbrain-turbo classify --model MODEL --manifest in.csv --output o.csv
    speechbrain-turbo serve --model MODEL [--host 127.0.0.1] [--port 7860]

A manifest is a CSV with the columns ``ID`` and ``wav`` and, optionally,
``text`` (an empty cell means no transcript). The output CSV has ``ID``,
``label``, ``score``, ``text`` (``given``, ``asr``: transcribed by the
model's Whisper, or ``absent``: audio only) and one ``prob_<label>`` column
per class. A file that cannot be used (missing, unreadable, truncated,
empty) is named on stderr with the reason; with a manifest every other row
is still classified, the bad ones go to ``<output>.rejects.csv``, and the
command exits with status 1. ``serve`` opens a web page to try the model
(see :mod:`speechbrain_turbo.app`; needs ``pip install -e ".[app]"``).

Authors
 * speechbrain-turbo contributors
"""

import argparse
import csv
import sys

from tqdm import tqdm

from speechbrain_turbo.export import export_model


def _classifier(model_folder, device):
    """Loads the model (imported here: export needs no inference stack)."""
    from speechbrain_turbo.inference import TurboClassifier

    return TurboClassifier.from_hparams(
        model_folder, run_opts={"device": device}
    )


def _problem(path):
    """Why ``path`` cannot be classified (one line), or None."""
    from speechbrain_turbo.screening import audio_problem

    problem = audio_problem(path)
    return None if problem is None else f"{problem[0]}: {problem[1]}"


def classify_one(args):
    """Prints the label and probabilities of one file."""
    problem = _problem(args.audio)
    if problem:
        raise SystemExit(f"speechbrain-turbo classify: {problem}")
    model = _classifier(args.model, args.device)
    probabilities, score, _, labels = model.classify_file(
        args.audio, text=args.text, transcribe=not args.no_asr
    )
    print(f"label: {labels[0]}  score: {float(score[0]):.4f}")
    print(f"text: {model.text_sources[0]}")
    for label, p in zip(model.labels, probabilities[0].tolist()):
        print(f"  {label}: {p:.4f}")


def classify_manifest(args):
    """Classifies every row of a CSV manifest into an output CSV."""
    model = _classifier(args.model, args.device)
    with open(args.manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [
            c for c in ("ID", "wav") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise SystemExit(
                f"{args.manifest}: missing column(s) {', '.join(missing)}; "
                "a manifest needs ID and wav (text optional)"
            )
        rows = list(reader)
    columns = ["ID", "label", "score", "text"]
    columns += [f"prob_{label}" for label in model.labels]
    rejects = []
    with open(args.output, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for line, row in enumerate(
            tqdm(rows, desc="classify", unit="file"), start=2
        ):
            problem = _problem(row["wav"])
            if problem is None:
                try:
                    probabilities, score, _, labels = model.classify_file(
                        row["wav"],
                        text=row.get("text") or None,
                        transcribe=not args.no_asr,
                    )
                except Exception as error:  # a decoder's own error types
                    problem = f"cannot classify {row['wav']!r}: {error}"
            if problem is not None:
                rejects.append({"line": line, "ID": row["ID"], "why": problem})
                print(
                    f"{args.manifest} line {line} (ID {row['ID']!r}): "
                    f"{problem}",
                    file=sys.stderr,
                )
                continue
            writer.writerow(
                [row["ID"], labels[0], f"{float(score[0]):.6f}"]
                + [model.text_sources[0]]
                + [f"{p:.6f}" for p in probabilities[0].tolist()]
            )
    print(
        f"{len(rows) - len(rejects)} of {len(rows)} files classified into "
        f"{args.output}"
    )
    if rejects:
        rejects_path = f"{args.output}.rejects.csv"
        with open(rejects_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["line", "ID", "why"])
            writer.writeheader()
            writer.writerows(rejects)
        raise SystemExit(
            f"{len(rejects)} of {len(rows)} rows could not be classified, "
            f"listed in {rejects_path}"
        )


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
        meta = export_model(
            args.experiment_folder, args.model_folder, asr_hub=args.asr_hub
        )
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
