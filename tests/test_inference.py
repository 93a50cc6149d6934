"""Using a trained model: export, TurboClassifier and the command line give
the recipe's own test predictions; any sample rate and channel count; no
transcript (audio-only path, with and without modality dropout).
"""

import csv
import io
import json
import os
import shutil

import pytest
import soundfile
import torch
import torchaudio
from conftest import (
    REPO,
    cli_classify,
    cli_classify_manifest,
    cli_in_a_subprocess,
    cli_in_this_process,
)
from speechbrain.dataio import audio_io

from speechbrain_turbo.app import classify_for_page

# Runs whole recipes or several processes: deselect with -m "not slow".
pytestmark = pytest.mark.slow


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_export_writes_a_self_contained_model_folder(exported):
    _, model, _, _ = exported
    files = set(os.listdir(model))
    assert {
        "hyperparams.yaml",
        "label_encoder.ckpt",
        "tokenizer.model",
    } <= files
    assert {
        "audio_encoder.ckpt",
        "audio_normalizer.ckpt",
        "fusion.ckpt",
    } <= files
    hparams = (model / "hyperparams.yaml").read_text()
    assert "pretrainer:" in hparams and "modules:" in hparams
    assert "turbo_loss" not in hparams and "train_csv" not in hparams


def test_cli_classify_matches_the_recipe_test_pass(exported, tmp_path):
    """The command as its own process, as it is used (the other tests run
    it in the test process, without the seconds of imports)."""
    run, model, manifest, test = exported
    classified = cli_classify_manifest(
        model, manifest, tmp_path / "out.csv", run=cli_in_a_subprocess
    )
    recipe = {
        row["ID"]: row["predicted"]
        for row in read_csv(run / "test_predictions.csv")
    }
    assert len(classified) == len(test) == len(recipe)
    assert {k: v["label"] for k, v in classified.items()} == recipe
    row = next(iter(classified.values()))
    assert row["text"] == "given"
    probabilities = [float(v) for k, v in row.items() if k.startswith("prob_")]
    assert len(probabilities) == 4
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)


def test_without_text_matches_the_recipe_test_without_text(exported):
    from speechbrain_turbo.inference import TurboClassifier

    run, model, _, test = exported
    classifier = TurboClassifier.from_hparams(str(model))
    recipe = {
        row["ID"]: row["predicted"]
        for row in read_csv(run / "test_predictions_without_text.csv")
    }
    for item_id, entry in test.items():
        _, _, _, labels = classifier.classify_file(entry["wav"])
        assert classifier.text_sources == ["absent"]
        assert labels[0] == recipe[item_id], item_id


def test_any_sample_rate_and_channel_count(exported, tmp_path):
    from speechbrain_turbo.inference import TurboClassifier

    _, model, _, test = exported
    classifier = TurboClassifier.from_hparams(str(model))
    entry = next(iter(test.values()))
    mono, rate = audio_io.load(entry["wav"], channels_first=True)
    stereo_44k = torchaudio.functional.resample(mono, rate, 44100).repeat(2, 1)
    path = str(tmp_path / "stereo_44k.wav")
    audio_io.save(path, stereo_44k, 44100)
    probabilities, score, index, labels = classifier.classify_file(
        path, text=entry["text"]
    )
    assert probabilities.shape == (1, 4)
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
    assert labels[0] == classifier.labels[int(index[0])]
    # The file went through the same reading as training: 16 kHz mono.
    wav = classifier.load_file(path)
    assert wav.dim() == 1
    assert abs(len(wav) - mono.shape[1] * 16000 / rate) <= 2
    expected = classifier.classify_batch(wav[None], texts=[entry["text"]])[0]
    torch.testing.assert_close(probabilities, expected)


def test_missing_text_is_transcribed_by_the_models_whisper(
    exported, tmp_path, capsys
):
    from speechbrain_turbo.inference import TurboClassifier
    from speechbrain_turbo.random_hf_models import save_random_whisper_model

    run, _, manifest, test = exported
    whisper = save_random_whisper_model(str(tmp_path / "whisper"))
    model = tmp_path / "model_asr"
    result = cli_in_this_process("export", run, model, f"--asr_hub={whisper}")
    assert result.returncode == 0, result.stderr[-3000:]
    # The local Whisper travels with the model: moved, the folder works.
    assert whisper not in (model / "hyperparams.yaml").read_text()
    shutil.rmtree(whisper)
    moved = tmp_path / "elsewhere" / "model_asr"
    shutil.move(str(model), str(moved))
    model = moved

    classifier = TurboClassifier.from_hparams(str(model))
    entry = next(iter(test.values()))
    wav = classifier.load_file(entry["wav"])
    (transcript,) = classifier.transcribe_batch(wav[None])
    assert transcript  # a tiny random Whisper: text, but meaningless
    with_asr = classifier.classify_file(entry["wav"])
    assert classifier.text_sources == ["asr"]
    assert classifier.transcripts == [transcript]
    # The same as giving that transcript as text.
    given = classifier.classify_file(entry["wav"], text=transcript)
    assert classifier.text_sources == ["given"]
    torch.testing.assert_close(with_asr[0], given[0])
    classifier.classify_file(entry["wav"], transcribe=False)
    assert classifier.text_sources == ["absent"]
    assert classifier.transcripts == [None]
    # The command line shows the words it classified.
    from speechbrain_turbo.cli import main

    main(["classify", "--model", str(model), "--audio", entry["wav"]])
    assert f"text: asr: {transcript}" in capsys.readouterr().out

    # The web page: an empty transcript box means Whisper's transcript, and
    # the page says which; the audio-only column skips the ASR.
    shown = classify_for_page(classifier, entry["wav"], "")
    assert f"Whisper transcript “{transcript}”" in shown.message
    assert list(shown.probabilities.values()) == pytest.approx(
        with_asr[0][0].tolist()
    )
    alone = classifier.classify_file(entry["wav"], transcribe=False)
    assert list(shown.audio_only.values()) == pytest.approx(
        alone[0][0].tolist()
    )

    # The command line reports the text source per item.
    rows = read_csv(manifest)
    no_text = tmp_path / "no_text.csv"
    with open(no_text, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wav", "text"])
        writer.writerow([rows[0]["ID"], rows[0]["wav"], ""])
        writer.writerow([rows[1]["ID"], rows[1]["wav"], rows[1]["text"]])
    for flags, sources in (
        ([], ["asr", "given"]),
        (["--no_asr"], ["absent", "given"]),
    ):
        output = tmp_path / f"out{len(flags)}.csv"
        result = cli_classify(
            model,
            "--manifest",
            str(no_text),
            "--output",
            str(output),
            *flags,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert [row["text"] for row in read_csv(output)] == sources


def bad_audio_files(folder):
    """A missing file, an empty file, a text file named .wav, 10 samples,
    a file with a NaN sample and one longer than the demo model's
    max_audio_seconds (60 s)."""
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    text = folder / "notes.wav"
    text.write_text("not audio at all\n")
    short = folder / "short.wav"
    audio_io.save(str(short), torch.zeros(1, 10), 16000)
    nan = folder / "nan.wav"
    samples = torch.zeros(16000)
    samples[100] = float("nan")
    soundfile.write(str(nan), samples.numpy(), 16000, subtype="FLOAT")
    long = folder / "long.wav"
    audio_io.save(str(long), torch.zeros(1, 61 * 8000), 8000)
    return {
        "missing": (str(folder / "gone.wav"), "no file"),
        "empty": (str(empty), "unreadable audio"),
        "text": (str(text), "unreadable audio"),
        "short": (str(short), "less than the 0.1 s needed"),
        "nan": (str(nan), "not finite numbers"),
        "long": (str(long), "more than max_audio_seconds=60"),
    }


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "text", "short", "nan", "long"]
)
def test_cli_names_a_bad_file_in_one_line(exported, tmp_path, kind):
    _, model, _, _ = exported
    path, reason = bad_audio_files(tmp_path)[kind]
    result = cli_classify(
        model,
        "--audio",
        path,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert reason in line and path in line


def test_cli_manifest_classifies_every_good_row_and_lists_the_bad(
    exported, tmp_path
):
    _, model, manifest, test = exported
    rows = read_csv(manifest)
    bad = bad_audio_files(tmp_path)
    rows[1:1] = [
        {"ID": f"bad_{kind}", "wav": path, "text": "hello"}
        for kind, (path, _) in bad.items()
    ]
    mixed = tmp_path / "mixed.csv"
    with open(mixed, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["ID", "wav", "text"])
        writer.writeheader()
        writer.writerows(rows)
    output = tmp_path / "out.csv"
    result = cli_classify(
        model,
        "--manifest",
        str(mixed),
        "--output",
        str(output),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{len(bad)} of" in result.stderr
    assert {row["ID"] for row in read_csv(output)} == set(test)
    rejects = read_csv(f"{output}.rejects.csv")
    assert [r["ID"] for r in rejects] == [f"bad_{k}" for k in bad]
    assert [int(r["line"]) for r in rejects] == list(range(3, 3 + len(bad)))
    for reject, (_, reason) in zip(rejects, bad.values()):
        assert reason in reject["why"]


class _RunsAShellCommand:
    """Unpickling this runs ``touch <marker>`` unless the loader refuses."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_not_run(exported, tmp_path):
    """Checkpoints load with torch's weights_only unpickler (torch >= 2.6,
    as setup.py requires): a tampered one stops the load and runs nothing.
    (The YAML of a model folder is code by design: docs/robustness.md.)"""
    import re
    import shutil

    from speechbrain_turbo.inference import TurboClassifier

    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        setup = f.read()
    for package in ("torch", "torchaudio"):
        (low,) = re.findall(rf'"{package}>=(\d+)\.(\d+)"', setup)
        assert tuple(map(int, low)) >= (2, 6), package
    _, model, _, _ = exported
    tampered = tmp_path / "model"
    shutil.copytree(model, tampered)
    marker = tmp_path / "it_ran"
    torch.save({"weight": _RunsAShellCommand(marker)}, tampered / "fusion.ckpt")
    with pytest.raises(Exception, match="[Ww]eights.only"):
        TurboClassifier.from_hparams(
            str(tampered), savedir=str(tmp_path / "savedir")
        )
    assert not marker.exists()


def test_cli_manifest_rows_that_cannot_be_read_become_rejects(
    exported, tmp_path, monkeypatch
):
    """A spreadsheet's byte-order mark is accepted; a row with too few
    fields, a line that is not UTF-8 and a repeated ID are rejected with
    their line numbers; relative paths are relative to the manifest; the
    output goes into a folder created for it."""
    _, model, manifest, test = exported
    rows = read_csv(manifest)[:2]
    folder = tmp_path / "data"
    folder.mkdir()
    for row in rows:  # copied next to the manifest, named relatively
        wav = folder / f"{row['ID']}.wav"
        wav.write_bytes(open(row["wav"], "rb").read())
        row["wav"] = wav.name
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["ID", "wav", "text"])
    writer.writerows([r["ID"], r["wav"], r["text"]] for r in rows)
    writer.writerow(["short_row", "x.wav"])  # line 4
    writer.writerow([rows[0]["ID"], rows[0]["wav"], "again"])  # line 5
    data = "\ufeff" + table.getvalue()
    data = data.encode("utf-8") + b"latin1,caf\xe9.wav,caf\xe9\n"  # line 6
    mixed = folder / "mixed.csv"
    mixed.write_bytes(data)
    output = tmp_path / "new" / "folder" / "out.csv"
    monkeypatch.chdir(tmp_path)  # another working directory
    result = cli_classify(model, "--manifest", mixed, "--output", output)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [r["ID"] for r in read_csv(output)] == [r["ID"] for r in rows], (
        result.stderr[-3000:]
    )
    rejects = read_csv(f"{output}.rejects.csv")
    assert [(r["line"], r["ID"]) for r in rejects] == [
        ("4", "short_row"),
        ("5", rows[0]["ID"]),
        ("6", "latin1"),
    ]
    assert "2 field(s) where the header has 3" in rejects[0]["why"]
    assert "duplicate ID (first at line 2)" in rejects[1]["why"]
    assert "not valid UTF-8" in rejects[2]["why"]
    assert not list(output.parent.glob(".partial-*"))


def test_cli_refuses_to_write_over_its_manifest_or_into_a_folder(
    exported, tmp_path
):
    _, model, manifest, _ = exported
    copy = tmp_path / "in.csv"
    copy.write_bytes(manifest.read_bytes())
    link = tmp_path / "link.csv"
    link.symlink_to(copy)
    for output, message in (
        (copy, "is the input manifest"),
        (link, "is the input manifest"),
        (tmp_path, "is a folder"),
    ):
        result = cli_classify(
            model, "--manifest", str(copy), "--output", str(output)
        )
        assert result.returncode != 0
        (line,) = result.stderr.strip().splitlines()
        assert message in line
    assert copy.read_bytes() == manifest.read_bytes()


def test_export_is_whole_or_absent_and_never_writes_into_its_run(
    exported, tmp_path
):
    from speechbrain_turbo.cli import main
    from speechbrain_turbo.export import export_model

    run, model, _, _ = exported
    before = (run / "hyperparams.yaml").read_bytes()
    for target in (run, run / "model", run.parent):
        with pytest.raises(ValueError, match="must lie outside the run"):
            export_model(str(run), str(target))
    assert (run / "hyperparams.yaml").read_bytes() == before
    assert not (run / "model").exists()

    # An earlier export is replaced whole: nothing of it stays.
    used = tmp_path / "used"
    export_model(str(run), str(used), examples=2)
    (used / "examples" / "stale.wav").write_bytes(b"old")
    export_model(str(run), str(used))
    assert not (used / "examples").exists()
    assert sorted(os.listdir(used)) == sorted(
        f for f in os.listdir(model) if not f.startswith("examples")
    )
    # Any other folder is left alone.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a model folder"):
        export_model(str(run), str(other))
    assert os.listdir(other) == ["notes.txt"]

    # Examples whose audio cannot be found: an error, and no folder.
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    screened = json.loads((copy / "test_screened.json").read_text())
    for entry in screened.values():
        entry["wav"] = "relative/missing.wav"
    (copy / "test_screened.json").write_text(json.dumps(screened))
    with pytest.raises(FileNotFoundError, match="relative/missing.wav"):
        export_model(str(copy), str(tmp_path / "half"), examples=1)
    assert sorted(os.listdir(tmp_path)) == ["copy", "other", "used"]

    with pytest.raises(SystemExit) as stop:
        main(["export", str(run), str(tmp_path / "x"), "--examples=-1"])
    assert stop.value.code == 2


def damaged_copies(model, tmp_path):
    """Model folders damaged in one way each -> the message's key words."""
    cases = {}

    def copy(name):
        folder = tmp_path / name
        shutil.copytree(model, folder)
        return folder

    copy("no_hparams").joinpath("hyperparams.yaml").unlink()
    cases["no_hparams"] = "hyperparams.yaml is missing"
    copy("empty_hparams").joinpath("hyperparams.yaml").write_text("")
    cases["empty_hparams"] = "hyperparams.yaml is empty"
    bad = copy("bad_yaml").joinpath("hyperparams.yaml")
    bad.write_text(bad.read_text() + "\n  : : [unclosed\n")
    cases["bad_yaml"] = "does not load"
    copy("no_labels").joinpath("label_encoder.ckpt").unlink()
    cases["no_labels"] = "label_encoder.ckpt"
    labels = copy("duplicate_label").joinpath("label_encoder.ckpt")
    text = labels.read_text()
    first = text.splitlines()[0]
    labels.write_text(text.replace(first, first.replace("=> 0", "=> 1"), 1))
    cases["duplicate_label"] = "label"
    copy("no_tokenizer").joinpath("tokenizer.model").unlink()
    cases["no_tokenizer"] = "does not load"
    weights = copy("truncated").joinpath("fusion.ckpt")
    weights.write_bytes(weights.read_bytes()[:100])
    cases["truncated"] = "does not load"
    swapped = copy("swapped")
    shutil.copy(swapped / "fusion.ckpt", swapped / "classifier.ckpt")
    cases["swapped"] = "classifier.ckpt does not fit the module classifier"
    return cases


def test_a_damaged_model_folder_is_named_in_one_line(exported, tmp_path):
    from speechbrain_turbo.cli import main

    run, model, manifest, test = exported
    wav = next(iter(test.values()))["wav"]
    cases = damaged_copies(model, tmp_path)
    cases[str(run)] = "is a training run's folder, not a model"
    for name, expected in cases.items():
        folder = name if os.path.isabs(name) else str(tmp_path / name)
        with pytest.raises(SystemExit) as stop:
            main(["classify", "--model", folder, "--audio", wav])
        message = str(stop.value)
        assert expected in message and "\n" not in message, (name, message)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            main(
                [
                    "classify",
                    "--model",
                    str(model),
                    "--audio",
                    wav,
                    "--device",
                    "cuda",
                ]
            )


def test_serve_names_a_busy_port_in_one_line(exported):
    import socket

    pytest.importorskip("gradio")
    from speechbrain_turbo.app import serve

    _, model, _, _ = exported
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(
            SystemExit, match=f"port {port} on 127.0.0.1 is in use"
        ):
            serve(str(model), port=port)
