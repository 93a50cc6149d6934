"""Audio-text datasets: items, resampling, errors."""

import json
import math

import pytest
import torch
from speechbrain.dataio import audio_io
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_turbo.dataio import (
    audio_text_datasets,
    count_labels,
    load_audio,
    resampling_ratio,
    transcript_group_ids,
)
from speechbrain_turbo.errors import MissingInputError
from speechbrain_turbo.manifests import read_manifest


def write_corpus(tmp_path, texts):
    manifest = {}
    for i, text in enumerate(texts):
        path = tmp_path / f"u{i}.wav"
        audio_io.save(str(path), torch.randn(1, 1600) * 0.1, 16000)
        manifest[f"u{i}"] = {
            "wav": "{data_root}/" + path.name,
            "duration": 0.1,
            "text": text,
            "emo": ["neu", "ang"][i % 2],
        }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(manifest))
    return str(path)


def words_to_ids(text):
    return [len(word) for word in text.split()]


def test_items_hold_audio_tokens_transcript_and_label(tmp_path):
    train = write_corpus(tmp_path, ["Hello there!", "go AWAY"])
    encoder = CategoricalEncoder()
    datasets = audio_text_datasets(
        {"train": train},
        words_to_ids,
        encoder,
        str(tmp_path / "labels.txt"),
        data_root=str(tmp_path),
    )
    item = datasets["train"][1]
    assert item["id"] == "u1"
    assert item["audio"].shape == (1600,)
    assert item["token_ids"].tolist() == [2, 4]
    assert item["transcript"] == "go away"
    assert item["label"].tolist() == [encoder.encode_label("ang")]


def test_empty_token_sequence_names_the_utterance(tmp_path):
    train = write_corpus(tmp_path, ["fine", ""])
    datasets = audio_text_datasets(
        {"train": train},
        words_to_ids,
        CategoricalEncoder(),
        str(tmp_path / "labels.txt"),
        data_root=str(tmp_path),
    )
    with pytest.raises(ValueError, match="Utterance u1"):
        datasets["train"][1]


def test_stereo_44k_audio_is_downmixed_and_resampled(tmp_path):
    path = str(tmp_path / "stereo.wav")
    left = 0.5 * torch.sin(torch.arange(44100) / 10.0)
    audio_io.save(path, torch.stack([left, 0.25 - left]), 44100)
    signal = load_audio(path, 16000)
    assert signal.shape == (16000,)
    # The channels' average is the constant 0.125 (up to PCM rounding).
    middle = signal[100:-100]
    assert torch.allclose(middle, torch.full_like(middle, 0.125), atol=1e-3)


def test_group_ids_are_stable_hashes():
    first = transcript_group_ids(["a b", "c", "a b"])
    assert first[0] == first[2] != first[1]
    assert torch.equal(first, transcript_group_ids(["a b", "c", "a b"]))


def write_csv_manifest(tmp_path, lines):
    audio_io.save(str(tmp_path / "a.wav"), torch.zeros(1, 160), 16000)
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_csv_manifest_without_a_required_column_names_file_and_column(
    tmp_path,
):
    path = write_csv_manifest(tmp_path, ["ID,wav,label", "u1,a.wav,joy"])
    with pytest.raises(ValueError) as error:
        read_manifest(path)
    assert str(error.value).startswith(f"{path}: missing column(s) text")


def test_csv_manifest_resolves_data_root_and_counts_labels(tmp_path):
    path = write_csv_manifest(
        tmp_path,
        [
            "ID,wav,text,label,speaker",
            "u1,$data_root/a.wav,Hi,joy,s1",
            "u2,$data_root/a.wav,Go,anger,s2",
            "u3,$data_root/a.wav,Ok,joy,s1",
        ],
    )
    entries = read_manifest(path, str(tmp_path))
    assert [item_id for item_id, _, _ in entries] == ["u1", "u2", "u3"]
    assert entries[0][2]["wav"] == str(tmp_path / "a.wav")
    assert entries[1][1] == f"{path} line 3 (ID 'u2')"
    assert entries[1][2]["speaker"] == "s2"
    assert count_labels(path, str(tmp_path)) == 2


def test_another_sample_rate_is_resampled_and_said_once(tmp_path, caplog):
    import logging

    from speechbrain_turbo import dataio

    dataio._resample_warned.discard(22050)
    paths = [str(tmp_path / f"{i}.wav") for i in range(3)]
    for path in paths:
        audio_io.save(path, torch.zeros(1, 22050), 22050)
    with caplog.at_level(logging.INFO, logger="speechbrain_turbo.dataio"):
        signals = [load_audio(path, 16000) for path in paths]
    assert all(signal.shape == (16000,) for signal in signals)
    said = [
        r for r in caplog.records if "from 22050 Hz to 16000 Hz" in r.message
    ]
    assert len(said) == 1 and paths[0] in said[0].message


def resampling_kernel_floats(orig, new):
    """The size of torchaudio's sinc kernel for the reduced ratio
    ``new / orig`` (its default width of 6 zero crossings, rolloff 0.99)."""
    base = min(orig, new) * 0.99
    width = math.ceil(6 * orig / base)
    return new * (orig + 2 * width)


@pytest.mark.parametrize(
    "rate", [8000, 11025, 22050, 24000, 32000, 44100, 48000, 96000]
)
def test_usual_rates_are_resampled_exactly(rate):
    orig, new = resampling_ratio(rate, 16000)
    assert orig * 16000 == new * rate


@pytest.mark.parametrize("rate", [7999, 8001, 16001, 44101, 96001, 192001])
def test_co_prime_rates_get_a_small_kernel(rate):
    """A 16 KB file at 8,001 Hz made the exact kernel take gigabytes:
    the ratio is approximated (under 0.1 % of duration and pitch) so that
    the kernel stays under a million floats (4 MB) for every rate."""
    orig, new = resampling_ratio(rate, 16000)
    exact = resampling_kernel_floats(rate, 16000)  # co-prime: no reduction
    assert exact > 5e7
    assert resampling_kernel_floats(orig, new) < 1e6
    assert abs(16000 * orig / new - rate) / rate < 1e-3


def test_a_co_prime_rate_keeps_duration_and_pitch(tmp_path):
    rate = 8001
    t = torch.arange(rate) / rate
    path = str(tmp_path / "odd.wav")
    audio_io.save(path, (0.5 * torch.sin(2 * math.pi * 440 * t))[None], rate)
    signal = load_audio(path, 16000)
    assert abs(signal.shape[0] - 16000) <= 2
    spectrum = torch.fft.rfft(signal[1000:15000]).abs()
    peak_hz = spectrum.argmax().item() * 16000 / 14000
    assert abs(peak_hz - 440) < 2


def test_csv_manifest_with_a_byte_order_mark_reads_its_header(tmp_path):
    """Spreadsheet programs start their UTF-8 CSV files with a BOM."""
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffID,wav,text,label\na,a.wav,Hi.,joy\n".encode())
    ((item_id, where, entry),) = read_manifest(str(path))
    assert item_id == "a" and entry["label"] == "joy"
    assert where.endswith("line 2 (ID 'a')")


@pytest.mark.parametrize("name", ["train.csv", "train.json"])
def test_missing_manifest_is_a_user_error_naming_the_file(tmp_path, name):
    """A manifest path that names no file: an InputError (one line from a
    recipe's train.py) naming the file, for CSV and JSON alike."""
    path = str(tmp_path / name)
    with pytest.raises(MissingInputError, match=f"{path}: no such manifest"):
        read_manifest(path)
    with pytest.raises(MissingInputError, match="no such manifest"):
        count_labels(path)
