"""Model folders and the files named after utterances: nothing is written
or served outside the model folder, and a model that is not a local folder
is never looked up on the HuggingFace hub unless named as a hub model.
"""

import csv
import json
import os
import time
import types

import pytest

from speechbrain_turbo.cli import main
from speechbrain_turbo.dataio import file_stem
from speechbrain_turbo.export import _export_examples
from speechbrain_turbo.inference import TurboClassifier, model_source

HOSTILE_IDS = ["../../../../../escaped", "a/b", "..", ".hidden", "x\x00y", ""]


def test_file_stems_stay_in_their_folder_and_never_collide():
    stems = [file_stem(item_id) for item_id in HOSTILE_IDS + ["a_b"]]
    assert len(set(stems)) == len(stems)
    for stem in stems:
        assert stem and "/" not in stem and not stem.startswith(".")
        assert "\x00" not in stem


def test_exported_examples_of_hostile_ids_stay_in_the_model_folder(tmp_path):
    run, model = tmp_path / "run" / "deep", tmp_path / "model"
    run.mkdir(parents=True)
    wav = tmp_path / "clip.wav"
    wav.write_bytes(b"RIFF")
    screened = {
        item_id: {"wav": str(wav), "text": "hi"} for item_id in HOSTILE_IDS
    }
    (run / "test_screened.json").write_text(json.dumps(screened))
    _export_examples(str(run), str(model), len(HOSTILE_IDS))
    written = sorted(os.listdir(model / "examples"))
    assert len(written) == len(HOSTILE_IDS)
    # Nothing beside the model folder and the run's own files.
    assert sorted(os.listdir(tmp_path)) == ["clip.wav", "model", "run"]
    with open(model / "examples.csv", newline="") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    assert sorted(os.path.basename(f) for f in files) == written
    folder = types.SimpleNamespace(
        hparams=types.SimpleNamespace(model_dir=str(model))
    )
    examples = TurboClassifier.examples.fget(folder)
    assert [os.path.dirname(path) for path, _ in examples] == [
        os.path.realpath(model / "examples")
    ] * len(HOSTILE_IDS)


@pytest.mark.parametrize(
    "entry", ["../secret.wav", "examples/../../x.wav", "/etc/passwd"]
)
def test_examples_outside_the_models_examples_folder_are_refused(
    tmp_path, entry
):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples.csv").write_text(
        f"file,text\nexamples/ok.wav,hi\n{entry},x\n"
    )
    folder = types.SimpleNamespace(
        hparams=types.SimpleNamespace(model_dir=str(tmp_path))
    )
    with pytest.raises(
        ValueError, match="line 3: .* is not a file of the model"
    ):
        TurboClassifier.examples.fget(folder)


def test_a_model_that_is_not_a_local_folder_is_refused_at_once(
    tmp_path, capsys
):
    missing = str(tmp_path / "results" / "demo_model")
    started = time.monotonic()
    with pytest.raises(SystemExit) as stop:
        main(["classify", "--model", missing, "--audio", "x.wav"])
    assert time.monotonic() - started < 5  # no hub look-up, no retries
    message = str(stop.value)
    assert message.count("\n") == 0 and missing in message
    assert "hf://" in message
    with pytest.raises(FileNotFoundError):
        model_source(str(tmp_path / "file.txt"))
    assert (
        model_source("hf://speechbrain/some-model") == "speechbrain/some-model"
    )
    assert model_source(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_classify_output_gets_the_mode_a_new_file_gets(tmp_path, umask):
    from speechbrain_turbo.cli import _write_csv_atomically

    previous = os.umask(umask)
    try:
        _write_csv_atomically(str(tmp_path / "out.csv"), [["ID"], ["u1"]])
    finally:
        os.umask(previous)
    assert os.stat(tmp_path / "out.csv").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    "name",
    ["plain.wav", "esc\x1bape.wav", "bell\x07.wav", "tab\t.wav", "é\u200b.wav"],
)
def test_page_messages_never_show_the_servers_path(tmp_path, name):
    from speechbrain_turbo.app import classify_for_page

    folder = tmp_path / "gradio" / "upload1234"
    folder.mkdir(parents=True)
    path = str(folder / name)

    class Refusing:
        def screened_file(self, audio_path):
            return None, (f"unreadable audio {audio_path!r} (x)", "fix it")

    class Failing(Refusing):
        modalities = ["audio"]

        def screened_file(self, audio_path):
            import torch

            return torch.zeros(160), None

        def classify_batch(self, wav, texts):
            raise RuntimeError(f"decoder failed on {path!r} and {ascii(path)}")

    for classifier in (Refusing(), Failing()):
        message = classify_for_page(classifier, path).message
        assert str(tmp_path) not in message and "upload1234" not in message
        assert "gradio" not in message
