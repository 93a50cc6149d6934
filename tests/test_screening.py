"""Bad inputs: each one stops the run with a message naming the manifest,
the line, the id and the column (on_bad_input: error), or is left out,
counted and listed in rejects.csv (on_bad_input: skip).
"""

import csv
import json
import os

import pytest
import torch
from speechbrain.dataio import audio_io

from speechbrain_turbo.dataio import load_audio, screen_manifests

HEADER = "ID,wav,text,label"


def make_audio(folder):
    """One file per audio case; returns name -> path."""
    paths = {name: str(folder / f"{name}.wav") for name in AUDIO_CASES}
    noise = torch.randn(1, 16000) * 0.1
    audio_io.save(paths["good"], noise, 16000)
    audio_io.save(paths["stereo_44k"], torch.randn(2, 44100) * 0.1, 44100)
    audio_io.save(paths["long"], torch.randn(1, 16000 * 3) * 0.1, 16000)
    audio_io.save(paths["empty"], torch.zeros(1, 0), 16000)
    audio_io.save(paths["truncated"], noise, 16000)
    data = open(paths["truncated"], "rb").read()
    open(paths["truncated"], "wb").write(data[: len(data) // 2])
    open(paths["unreadable"], "wb").write(b"not audio at all" * 20)
    return paths


AUDIO_CASES = ("good", "stereo_44k", "long", "empty", "truncated", "unreadable")
# id -> (CSV line after the header, column at fault, words of the reason)
BAD_TRAIN_ROWS = {
    "missing_wav": ("missing_wav,{root}/gone.wav,Hello.,joy", "wav", "no file"),
    "unreadable": (
        "unreadable,{root}/unreadable.wav,Hello.,joy",
        "wav",
        "unreadable audio",
    ),
    "truncated": (
        "truncated,{root}/truncated.wav,Hello.,joy",
        "wav",
        "truncated audio",
    ),
    "empty_audio": (
        "empty_audio,{root}/empty.wav,Hello.,joy",
        "wav",
        "empty audio",
    ),
    "too_long": ("too_long,{root}/long.wav,Hello.,joy", "wav", "lasts 3.0 s"),
    "empty_text": (
        "empty_text,{root}/good.wav,  ,joy",
        "text",
        "empty transcript",
    ),
    "not_utf8": (
        "not_utf8,{root}/good.wav,Caf\xe9 noir,joy",
        "text",
        "not valid UTF-8",
    ),
    "no_label": ("no_label,{root}/good.wav,Hello.,", "label", "empty label"),
    "good_1": ("good_1,{root}/good.wav,Hello there.,sad", None, None),
    "duplicate": ("good_1,{root}/good.wav,Again.,sad", "ID", "duplicate id"),
}
GOOD_ROWS = [
    "good_0,{root}/good.wav,Hello.,joy",
    "stereo,{root}/stereo_44k.wav,Loud and wide.,sad",
]


def write_csv(path, rows, root, latin1=()):
    with open(path, "wb") as f:
        for number, row in enumerate([HEADER, *rows]):
            text = row.format(root=root) + "\n"
            f.write(text.encode("latin-1" if number in latin1 else "utf-8"))


@pytest.fixture
def corpus(tmp_path):
    make_audio(tmp_path)
    rows = GOOD_ROWS + [row for row, _, _ in BAD_TRAIN_ROWS.values()]
    not_utf8_line = 1 + rows.index(BAD_TRAIN_ROWS["not_utf8"][0])
    write_csv(tmp_path / "train.csv", rows, tmp_path, latin1={not_utf8_line})
    write_csv(
        tmp_path / "valid.csv",
        [
            "v_good,{root}/good.wav,Fine.,joy",
            "v_fear,{root}/good.wav,Boo.,fear",
        ],
        tmp_path,
    )
    write_csv(
        tmp_path / "test.csv", ["t_good,{root}/good.wav,Ok.,sad"], tmp_path
    )
    manifests = {
        s: str(tmp_path / f"{s}.csv") for s in ("train", "valid", "test")
    }
    return tmp_path, manifests


def read_rejects(folder):
    with open(folder / "rejects.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_skip_leaves_out_every_bad_entry_counted_with_its_reason(corpus):
    folder, manifests = corpus
    out = folder / "out"
    out.mkdir()
    screened = screen_manifests(
        manifests,
        str(out),
        label_key="label",
        on_bad_input="skip",
        max_audio_seconds=2.0,
    )
    rejects = read_rejects(out)
    by_id = {}
    for row in rejects:
        by_id.setdefault(row["id"], []).append(row)
    for item_id, (_, column, reason) in BAD_TRAIN_ROWS.items():
        if column is None:
            continue
        item_id = "good_1" if item_id == "duplicate" else item_id
        assert any(
            r["column"] == column
            and reason in r["reason"]
            and r["split"] == "train"
            for r in by_id[item_id]
        ), (item_id, by_id.get(item_id))
    assert [r["id"] for r in rejects if r["split"] == "valid"] == ["v_fear"]
    assert (
        "'fear' is not among the training labels"
        in by_id["v_fear"][0]["reason"]
    )
    for row in rejects:
        assert row["where"].startswith(manifests[row["split"]] + " line ")

    # Used + rejected = what came in, per split.
    train = json.loads(open(screened["train"]).read())
    assert sorted(train) == ["good_0", "good_1", "stereo"]
    assert len(train) + sum(r["split"] == "train" for r in rejects) == 12
    valid = json.loads(open(screened["valid"]).read())
    assert sorted(valid) == ["v_good"]
    # Another rate and two channels are not bad inputs: resampled, downmixed.
    assert load_audio(train["stereo"]["wav"], 16000).shape == (16000,)


@pytest.mark.parametrize(
    "item_id", [k for k, v in BAD_TRAIN_ROWS.items() if v[1]]
)
def test_error_names_manifest_line_id_and_column(tmp_path, item_id):
    make_audio(tmp_path)
    row, column, reason = BAD_TRAIN_ROWS[item_id]
    rows = [GOOD_ROWS[0], row]
    if item_id == "duplicate":
        rows = [GOOD_ROWS[0], BAD_TRAIN_ROWS["good_1"][0], row]
    latin1 = {len(rows)} if item_id == "not_utf8" else set()
    write_csv(tmp_path / "train.csv", rows, tmp_path, latin1=latin1)
    manifests = {"train": str(tmp_path / "train.csv")}
    with pytest.raises(ValueError) as error:
        screen_manifests(
            manifests, str(tmp_path), label_key="label", max_audio_seconds=2.0
        )
    message = str(error.value)
    shown_id = "good_1" if item_id == "duplicate" else item_id
    assert message.startswith(
        f"{manifests['train']} line {len(rows) + 1} (ID {shown_id!r}), "
        f"column {column}: "
    ), message
    assert reason in message
    assert "on_bad_input: skip" in message


def test_json_manifest_duplicates_and_missing_transcripts(tmp_path):
    make_audio(tmp_path)
    wav = str(tmp_path / "good.wav")
    path = tmp_path / "train.json"
    first = json.dumps({"wav": wav, "text": "Hi.", "emo": "neu"})
    missing = json.dumps(
        {"wav": wav, "text": None, "emo": "neu", "transcript_file": "t.txt"}
    )
    again = json.dumps({"wav": wav, "text": "Again.", "emo": "neu"})
    other = json.dumps({"wav": wav, "text": "Sad.", "emo": "sad"})
    # iemocap_prepare.py's flag for a transcript line that is not UTF-8.
    garbled = json.dumps(
        {"wav": wav, "text": "Caf\ufffd.", "emo": "neu", "_not_utf8": True}
    )
    # A JSON object may repeat a key; json.load would keep only the last.
    path.write_text(
        f'{{"a": {first}, "b": {missing}, "a": {again}, "c": {other}, '
        f'"d": {garbled}}}'
    )
    screened = screen_manifests(
        {"train": str(path)}, str(tmp_path), on_bad_input="skip"
    )
    assert list(json.loads(open(screened["train"]).read())) == ["a", "c"]
    rejects = {r["id"]: r for r in read_rejects(tmp_path)}
    assert rejects["b"]["reason"] == "missing transcript (no line in 't.txt')"
    assert rejects["a"]["reason"].startswith("duplicate id (first at ")
    assert rejects["d"]["column"] == "text"
    assert "not valid UTF-8" in rejects["d"]["reason"]


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="on_bad_input must be one of"):
        screen_manifests({}, str(tmp_path), on_bad_input="ignore")


def test_audio_that_would_decode_beyond_its_bound_is_refused_from_the_header(
    tmp_path,
):
    from speechbrain_turbo.screening import inspect_audio

    many = str(tmp_path / "many.flac")
    # 8 channels at 96 kHz: a small file on disk (silence compresses),
    # 3 MB decoded for one second, where 48 kHz stereo would be 0.38 MB.
    audio_io.save(many, torch.zeros(8, 96000), 96000)
    stereo = str(tmp_path / "stereo.wav")
    audio_io.save(stereo, torch.zeros(2, 48000), 48000)
    problem, _ = inspect_audio(many, max_seconds=2)
    assert "would decode to 3 MB (8 channels at 96000 Hz)" in problem[0]
    assert "mono at 16 kHz" in problem[1]
    assert inspect_audio(stereo, max_seconds=1) == (None, 1.0)
    assert os.path.getsize(many) < 200_000


def manifest_file(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def good_lines(folder, ids, labels=("ang", "sad")):
    make_audio(folder)
    wav = folder / "good.wav"
    return "".join(
        f"{i},{wav},hello {i},{labels[n % len(labels)]}\n"
        for n, i in enumerate(ids)
    )


def test_unclosed_quote_stops_training_naming_the_lines(tmp_path):
    body = good_lines(tmp_path, ["a", "b"])
    wav = tmp_path / "good.wav"
    merged = f'c,{wav},"never closed,ang\n' + good_lines(tmp_path, ["d", "e"])
    train = manifest_file(tmp_path, "train.csv", HEADER + "\n" + body + merged)
    with pytest.raises(ValueError) as error:
        screen_manifests({"train": train}, str(tmp_path), label_key="label")
    assert f"{train} lines 4-6: a quote opened in line 4" in str(error.value)


def test_a_huge_cell_is_one_bad_entry_and_the_good_rows_stay(tmp_path):
    body = good_lines(tmp_path, ["a", "b"])
    wav = tmp_path / "good.wav"
    huge = f"c,{wav},{'x' * 200_000},ang\n"
    train = manifest_file(tmp_path, "train.csv", HEADER + "\n" + body + huge)
    out = tmp_path / "out"
    out.mkdir()
    screened = screen_manifests(
        {"train": train}, str(out), label_key="label", on_bad_input="skip"
    )
    assert sorted(json.load(open(screened["train"]))) == ["a", "b"]
    (reject,) = read_rejects(out)
    assert reject["id"] == "c" and "200,000 characters" in reject["reason"]


@pytest.mark.parametrize(
    "header", ["ID,wav,wav,text,label", "ID,wav,text,text,label"]
)
def test_a_header_naming_a_column_twice_is_refused(tmp_path, header):
    train = manifest_file(tmp_path, "train.csv", header + "\n")
    with pytest.raises(ValueError, match="names (wav|text) more than once"):
        screen_manifests({"train": train}, str(tmp_path), label_key="label")


def test_empty_splits_one_class_and_shared_ids_are_refused(tmp_path):
    train = manifest_file(
        tmp_path, "train.csv", HEADER + "\n" + good_lines(tmp_path, ["a", "b"])
    )
    empty = manifest_file(tmp_path, "valid.csv", HEADER + "\n")
    with pytest.raises(ValueError, match="valid.csv: no usable valid entry"):
        screen_manifests(
            {"train": train, "valid": empty}, str(tmp_path), label_key="label"
        )
    one_class = manifest_file(
        tmp_path,
        "one.csv",
        HEADER + "\n" + good_lines(tmp_path, ["a", "b"], labels=("ang",)),
    )
    with pytest.raises(ValueError, match="the label 'ang'; a classifier needs"):
        screen_manifests({"train": one_class}, str(tmp_path), label_key="label")
    leaky = manifest_file(
        tmp_path, "test.csv", HEADER + "\n" + good_lines(tmp_path, ["x", "b"])
    )
    with pytest.raises(ValueError, match="1 test ID.*e.g. 'b'"):
        screen_manifests(
            {"train": train, "test": leaky}, str(tmp_path), label_key="label"
        )


def test_classify_manifests_list_merged_and_huge_rows_as_rejects(tmp_path):
    from speechbrain_turbo.cli import _manifest_rows

    wav = tmp_path / "a.wav"
    path = manifest_file(
        tmp_path,
        "m.csv",
        f'ID,wav,text\na,{wav},hi\nb,{wav},"open\nc,{wav},x\nd,{wav},ok"\n'
        f"e,{wav},{'y' * 140_000}\nf,{wav},fine\n",
    )
    rows, rejects = _manifest_rows(path)
    assert [row["ID"] for _, row in rows] == ["a", "f"]
    why = {r["ID"]: r["why"] for r in rejects}
    assert "a quote opened in line 3 is not closed before line 5" in why["b"]
    assert "140,000 characters" in why["e"]
    twice = manifest_file(tmp_path, "twice.csv", "ID,wav,wav\n")
    with pytest.raises(SystemExit, match="names wav more than once"):
        _manifest_rows(twice)
