"""The web page of ``speechbrain-turbo serve``: the same answers as
``speechbrain-turbo classify``, a message (never a stack trace) for bad
input, and a server that keeps serving after it.
"""

import csv
import os
import subprocess

import pytest
import soundfile
import torch
from browser.check_serve_page import start_server
from conftest import REPO, cli_classify_manifest

from speechbrain_turbo.app import classify_for_page

# Uses the tiny trained model of conftest's `exported`: deselect with
# -m "not slow".
pytestmark = pytest.mark.slow


def assert_same_answer(shown, row, classifier):
    """The page's probabilities are the CLI's (printed to 6 decimals); the
    page names the labels, the CLI gives their codes."""
    code = dict(zip(classifier.display_names, classifier.labels))
    shown = {code[name]: p for name, p in shown.items()}
    assert max(shown, key=shown.get) == row["label"]
    assert {f"prob_{k}": v for k, v in shown.items()} == pytest.approx(
        {k: float(v) for k, v in row.items() if k.startswith("prob_")},
        abs=2e-6,
    )


def test_page_gives_the_cli_label_and_probabilities(exported, tmp_path):
    from speechbrain_turbo.inference import TurboClassifier

    _, model, _, test = exported
    items = list(test.items())[:6]
    # One manifest, one CLI run: each recording with and without its text.
    manifest = tmp_path / "in.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav", "text"])
        for item_id, entry in items:
            writer.writerow([item_id, entry["wav"], entry["text"]])
            writer.writerow([f"{item_id}_alone", entry["wav"], ""])
    rows = cli_classify_manifest(model, manifest, tmp_path / "out.csv")

    classifier = TurboClassifier.from_hparams(str(model))
    for item_id, entry in items:
        alone = rows[f"{item_id}_alone"]
        shown = classify_for_page(classifier, entry["wav"], entry["text"])
        assert "typed transcript" in shown.message
        assert_same_answer(shown.probabilities, rows[item_id], classifier)
        assert_same_answer(shown.audio_only, alone, classifier)
        # An empty box: this model has no ASR, so the audio alone.
        shown = classify_for_page(classifier, entry["wav"], "  ")
        assert "audio alone" in shown.message
        assert_same_answer(shown.probabilities, alone, classifier)


def bad_recordings(folder):
    """An empty file, a text file named .wav and a 10-minute recording."""
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    text = folder / "notes.wav"
    text.write_text("not audio at all\n")
    long = folder / "lecture.wav"
    soundfile.write(long, torch.zeros(8000 * 600).numpy(), 8000)
    return {
        empty: "unreadable audio 'empty.wav'",
        text: "unreadable audio 'notes.wav'",
        long: "at most 60 s",
    }


def test_served_page_answers_and_survives_bad_input(exported, tmp_path):
    from gradio_client import Client, handle_file

    _, model, _, test = exported
    log_path = tmp_path / "serve.log"
    log = open(log_path, "w")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    try:
        server, url = start_server(
            model,
            cwd=REPO,
            env=dict(
                os.environ,
                OMP_NUM_THREADS="1",
                HF_HUB_OFFLINE="1",
                TMPDIR=str(temporary),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    except RuntimeError as error:
        pytest.fail(f"{error}\n{log_path.read_text()}")
    try:
        client = Client(url, verbose=False)

        message, both, alone = client.predict(None, "", api_name="/classify")
        assert message.startswith("Record something") and not both
        for path, reason in bad_recordings(tmp_path).items():
            message, both, alone = client.predict(
                handle_file(str(path)), "", api_name="/classify"
            )
            assert message.startswith("Cannot use this recording"), message
            assert reason in message and "Traceback" not in message
            assert not both and not alone

        # Still serving: a good recording gets its answer.
        entry = next(iter(test.values()))
        message, both, alone = client.predict(
            handle_file(entry["wav"]), entry["text"], api_name="/classify"
        )
        assert "typed transcript" in message
        assert {c["label"] for c in both["confidences"]} == {
            c["label"] for c in alone["confidences"]
        }
        assert server.poll() is None
        # The uploads are in the server's own folder...
        (uploads,) = temporary.glob("speechbrain-turbo-uploads-*")
        assert any(path.is_file() for path in uploads.rglob("*"))
    finally:
        server.terminate()  # SIGTERM
        server.wait(timeout=60)
        log.close()
    # ...which goes with the server, also when it is stopped by SIGTERM.
    assert not list(temporary.glob("speechbrain-turbo-uploads-*"))
    assert "Traceback" not in log_path.read_text()


def test_page_limits_transcripts_and_hides_server_paths(exported, tmp_path):
    from speechbrain_turbo import app
    from speechbrain_turbo.inference import TurboClassifier

    _, model, _, test = exported
    classifier = TurboClassifier.from_hparams(str(model))
    wav = next(iter(test.values()))["wav"]
    shown = classify_for_page(classifier, wav, "x" * 2001)
    assert "2,001 characters" in shown.message and not shown.probabilities
    shown = classify_for_page(classifier, wav, "a " * 700)  # 1,400 chars
    assert "tokens; this page takes at most 512" in shown.message

    def fails(*args, **kwargs):
        raise RuntimeError(f"cannot decode {wav}: bad frame")

    classifier.classify_batch = fails
    shown = classify_for_page(classifier, wav, "hello")
    assert os.path.basename(wav) in shown.message
    assert os.path.dirname(wav) not in shown.message

    # What serve() launches: upload size, queue and cache deletion bounded.
    launched = {}

    def launch(page, **options):
        launched.update(page=page, **options)

    import gradio

    original = gradio.Blocks.launch
    gradio.Blocks.launch = launch
    try:
        app.serve(str(model), host="0.0.0.0", port=7999)
    finally:
        gradio.Blocks.launch = original
    assert launched["max_file_size"] == app.upload_limit_bytes(60)
    page = launched["page"]
    assert page._queue.max_size == app.MAX_QUEUE_SIZE
    assert page.delete_cache == (60, app.UPLOAD_LIFETIME_SECONDS)
    assert launched["server_name"] == "0.0.0.0"


def test_serving_beyond_the_loopback_address_warns(caplog):
    import logging

    from speechbrain_turbo.app import warn_if_exposed

    with caplog.at_level(logging.WARNING):
        assert not warn_if_exposed("127.0.0.1")
        assert warn_if_exposed("0.0.0.0")
    assert "anyone who can reach this address" in caplog.text


def test_page_names_the_classes_and_offers_the_exported_examples(exported):
    """IEMOCAP's codes appear in words, with the code beside the winner;
    the examples exported with the model are on the page, one click from
    a prediction."""
    from speechbrain_turbo.app import build_page
    from speechbrain_turbo.inference import TurboClassifier

    _, model, _, test = exported
    classifier = TurboClassifier.from_hparams(str(model))
    assert sorted(classifier.display_names) == [
        "angry",
        "happy or excited",
        "neutral",
        "sad",
    ]
    examples = classifier.examples
    assert len(examples) == 2
    first_id, first = next(iter(test.items()))
    assert os.path.basename(examples[0][0]) == f"{first_id}.wav"
    assert examples[0][1] == first["text"]
    shown = classify_for_page(classifier, *examples[0])
    name = max(shown.probabilities, key=shown.probabilities.get)
    code = classifier.labels[classifier.display_names.index(name)]
    # The code beside the name where they differ (IEMOCAP's "sad" is both).
    prefix = f"**{name}** ({code}, " if code != name else f"**{name}** ("
    assert shown.message.startswith(prefix)
    page = build_page(classifier)
    datasets = [
        block
        for block in page.blocks.values()
        if getattr(block, "elem_id", None) == "examples"
    ]
    assert len(datasets) == 1 and len(datasets[0].samples) == 2
