"""Tests of recipes/IEMOCAP/turbo/iemocap_prepare.py on a tiny fake corpus.

The fixture writes an IEMOCAP_full_release-shaped tree by hand (5 sessions,
one female and one male speaker each), with the real file formats: label
summary lines among header and annotator lines, EmoEvaluation sub-folders
holding decoys, transcription lines that are not utterances, and short
16 kHz wavs.

Authors
 * speechbrain-turbo contributors
"""

import importlib
import json
import os
import shutil
import sys
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from speechbrain_turbo.errors import InputError, MissingInputError

RECIPE_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    os.pardir,
    "recipes",
    "IEMOCAP",
    "turbo",
)
# Recipes are not a package: import the module from its folder.
sys.path.insert(0, os.path.abspath(RECIPE_DIR))
prep = importlib.import_module("iemocap_prepare")

SR = 16000
EMO_MAP = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
# Label codes per speaker, spread over the two dialogs of each session.
BASE_CODES = ["neu", "neu", "hap", "exc", "ang", "sad", "fru", "xxx"]
# Make sessions differ in size and content, so that splits can be told
# apart by their counts.
EXTRA_CODES = {
    (1, "M"): ["exc"],
    (2, "F"): ["sur", "neu"],
    (3, "M"): ["ang", "oth", "fru"],
    (4, "F"): ["sad", "dis"],
    (5, "M"): ["fea", "hap", "neu"],
}
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
ANNOTATOR_LINES = (
    "C-E2:\tNeutral;\t()\n"
    "C-E3:\tFrustration; Neutral;\t()\n"
    "C-F1:\tNeutral;\t(curious)\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\n"
    "A-F1:\tval 3; act 2; dom  1;\t(mildly aggravated, but polite)\n"
)


def _write_corpus(root):
    """Writes the fake corpus under root; returns (records, n_ignored)."""
    rng = np.random.default_rng(0)
    records = []
    n_ignored = 0
    for k in range(1, 6):
        sess = os.path.join(root, f"Session{k}")
        label_dir = os.path.join(sess, "dialog", "EmoEvaluation")
        trans_dir = os.path.join(sess, "dialog", "transcriptions")
        dialogs = [f"Ses0{k}F_impro01", f"Ses0{k}M_script01_1"]
        lines = {d: [] for d in dialogs}  # (start, label_block, transcript)
        for gender in "FM":
            speaker = f"Ses0{k}{gender}"
            codes = BASE_CODES + EXTRA_CODES.get((k, gender), [])
            for i, code in enumerate(codes):
                dialog = dialogs[i % 2]
                utt = f"{dialog}_{gender}{i:03d}"
                frames = int(SR * (0.2 + 0.01 * (len(records) % 17)))
                wav_dir = os.path.join(sess, "sentences", "wav", dialog)
                os.makedirs(wav_dir, exist_ok=True)
                # Alternate silence and noise; content does not matter.
                audio = (
                    np.zeros(frames)
                    if i % 2
                    else 0.01 * rng.standard_normal(frames)
                )
                sf.write(
                    os.path.join(wav_dir, utt + ".wav"),
                    audio,
                    SR,
                    subtype="PCM_16",
                )
                start = 2.0 * i + (0.5 if gender == "M" else 0.0)
                end = start + frames / SR
                # A colon inside the text checks that only the first
                # "]: " separates id and text.
                text = f"Line {i} of {speaker}: I feel {code}, honestly."
                label = (
                    f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t"
                    "[2.5000, 3.0000, 2.5000]\n" + ANNOTATOR_LINES + "\n"
                )
                trans = f"{utt} [{start:08.4f}-{end:08.4f}]: {text}\n"
                lines[dialog].append((start, label, trans))
                records.append(
                    {
                        "utt": utt,
                        "code": code,
                        "text": text,
                        "session": k,
                        "speaker": speaker,
                        "dialog": dialog,
                        "duration": frames / SR,
                    }
                )
        os.makedirs(label_dir)
        os.makedirs(trans_dir)
        for dialog in dialogs:
            entries = sorted(lines[dialog])
            with open(os.path.join(label_dir, dialog + ".txt"), "w") as f:
                f.write(HEADER + "".join(e[1] for e in entries))
            trans = [e[2] for e in entries]
            if dialog.endswith("impro01"):
                # An id with no wav and no label, as in the real corpus.
                trans.insert(
                    1,
                    f"{dialog}_MXX0 [030.0000-031.0000]: [LAUGHTER]\n",
                )
                n_ignored += 1
            if k == 1 and dialog.endswith("script01_1"):
                trans.append("M: [BREATHING]\n")
                n_ignored += 1
            with open(os.path.join(trans_dir, dialog + ".txt"), "w") as f:
                f.write("".join(trans))
        # Decoys: sub-folders of EmoEvaluation that must not be read. The
        # Categorical one has a summary-like line whose wav does not exist.
        for sub, name, content in [
            (
                "Categorical",
                f"Ses0{k}F_impro01_e2_cat.txt",
                (
                    f"[1.0000 - 2.0000]\tSes0{k}F_impro01_F999\tneu\t"
                    "[2.5000, 2.5000, 2.5000]\n"
                ),
            ),
            (
                "Attribute",
                f"Ses0{k}F_impro01_e3_atr.txt",
                f"Ses0{k}F_impro01_F000 :act 2; val 3; dom 2;  ()\n",
            ),
            (
                "Self-evaluation",
                f"Ses0{k}F_impro01.txt",
                f"Ses0{k}F_impro01_F000 :Anger; ()\n",
            ),
        ]:
            os.makedirs(os.path.join(label_dir, sub))
            with open(os.path.join(label_dir, sub, name), "w") as f:
                f.write(content)
    return records, n_ignored


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The fake corpus: (data_folder, records, ignored transcript lines)."""
    root = str(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")
    records, n_ignored = _write_corpus(root)
    return root, records, n_ignored


@pytest.fixture
def corpus_copy(corpus, tmp_path):
    """A private copy of the corpus, for tests that damage it."""
    root, records, n_ignored = corpus
    copy = str(tmp_path / "IEMOCAP_full_release")
    shutil.copytree(root, copy)
    return copy, records, n_ignored


def _load(save):
    manifests = {}
    for split in ("train", "valid", "test"):
        with open(os.path.join(save, f"{split}.json")) as f:
            manifests[split] = json.load(f)
    return manifests


def _kept(records):
    return {r["utt"]: r for r in records if r["code"] in EMO_MAP}


def _expected_counts(records, sessions):
    counts = Counter(
        EMO_MAP[r["code"]]
        for r in records
        if r["code"] in EMO_MAP and r["session"] in sessions
    )
    return {emo: counts[emo] for emo in ("neu", "hap", "ang", "sad")}


def test_counts_per_split_and_class(corpus, tmp_path):
    root, records, _ = corpus
    save = str(tmp_path / "save")
    summary = prep.prepare_iemocap(root, save)
    manifests = _load(save)
    expected_sessions = {"train": [2, 3, 4], "valid": [1], "test": [5]}
    assert summary["sessions"] == expected_sessions
    for split, sessions in expected_sessions.items():
        expected = _expected_counts(records, sessions)
        assert summary["counts"][split] == expected, split
        in_file = Counter(e["emo"] for e in manifests[split].values())
        assert dict(in_file) == {k: v for k, v in expected.items() if v}
        assert summary["totals"][split] == sum(expected.values())
    all_ids = [u for m in manifests.values() for u in m]
    assert len(all_ids) == len(set(all_ids))
    # Every kept utterance is somewhere, and the decoy id nowhere.
    assert set(all_ids) == set(_kept(records))


def test_exc_merged_into_hap(corpus, tmp_path):
    root, records, _ = corpus
    summary = prep.prepare_iemocap(root, str(tmp_path / "save"))
    manifests = _load(str(tmp_path / "save"))
    merged = {u: e for m in manifests.values() for u, e in m.items()}
    exc = [r["utt"] for r in records if r["code"] == "exc"]
    hap = [r["utt"] for r in records if r["code"] == "hap"]
    assert exc and hap
    assert all(merged[u]["emo"] == "hap" for u in exc + hap)
    assert {e["emo"] for e in merged.values()} == {"neu", "hap", "ang", "sad"}
    assert summary["kept_codes"]["exc"] == len(exc)
    assert summary["kept_codes"]["hap"] == len(hap)
    total_hap = sum(c["hap"] for c in summary["counts"].values())
    assert total_hap == len(exc) + len(hap)


def test_dropped_classes_counted(corpus, tmp_path):
    root, records, _ = corpus
    summary = prep.prepare_iemocap(root, str(tmp_path / "save"))
    dropped = Counter(r["code"] for r in records if r["code"] not in EMO_MAP)
    assert summary["dropped"] == dict(dropped)
    assert set(dropped) == {"fru", "xxx", "sur", "oth", "dis", "fea"}
    manifests = _load(str(tmp_path / "save"))
    ids = {u for m in manifests.values() for u in m}
    assert not ids & {r["utt"] for r in records if r["code"] in dropped}


def test_fields_and_text_attached_to_each_id(corpus, tmp_path):
    root, records, _ = corpus
    prep.prepare_iemocap(root, str(tmp_path / "save"))
    manifests = _load(str(tmp_path / "save"))
    merged = {u: e for m in manifests.values() for u, e in m.items()}
    for utt, rec in _kept(records).items():
        entry = merged[utt]
        assert entry["text"] == rec["text"], utt
        assert entry["wav"] == (
            "{data_root}/Session"
            f"{rec['session']}/sentences/wav/{rec['dialog']}/{utt}.wav"
        )
        assert os.path.isfile(entry["wav"].format(data_root=root))
        assert entry["speaker"] == rec["speaker"]
        assert entry["session"] == rec["session"]
        assert entry["emo"] == EMO_MAP[rec["code"]]
        assert entry["duration"] == pytest.approx(rec["duration"], abs=1e-6)


def test_ignored_transcript_lines_counted(corpus, tmp_path):
    root, _, n_ignored = corpus
    summary = prep.prepare_iemocap(root, str(tmp_path / "save"))
    assert n_ignored == 6
    assert summary["ignored_transcript_lines"] == n_ignored


@pytest.mark.parametrize("test_session", [1, 2, 3, 4, 5])
def test_no_test_speaker_in_train_or_valid(corpus, tmp_path, test_session):
    root, _, _ = corpus
    save = str(tmp_path / "save")
    prep.prepare_iemocap(root, save, test_session=test_session)
    manifests = _load(save)
    speakers = {
        split: {e["speaker"] for e in m.values()}
        for split, m in manifests.items()
    }
    test_speakers = {f"Ses0{test_session}F", f"Ses0{test_session}M"}
    assert speakers["test"] == test_speakers
    assert not test_speakers & (speakers["train"] | speakers["valid"])
    # Default validation: the next session, cyclically.
    valid_session = test_session % 5 + 1
    assert {e["session"] for e in manifests["valid"].values()} == {
        valid_session
    }


def test_valid_from_configured_session(corpus, tmp_path):
    root, records, _ = corpus
    save = str(tmp_path / "save")
    summary = prep.prepare_iemocap(root, save, test_session=2, valid_split=4)
    manifests = _load(save)
    sessions = {
        split: {e["session"] for e in m.values()}
        for split, m in manifests.items()
    }
    assert sessions == {"train": {1, 3, 5}, "valid": {4}, "test": {2}}
    assert summary["sessions"]["valid"] == [4]
    ids = [set(m) for m in manifests.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == set(_kept(records))
    assert summary["counts"]["valid"] == _expected_counts(records, [4])


def test_valid_fraction(corpus, tmp_path):
    root, records, _ = corpus
    save = str(tmp_path / "a")
    summary = prep.prepare_iemocap(root, save, valid_split=0.5, seed=7)
    manifests = _load(save)
    train, valid, test = (
        manifests["train"],
        manifests["valid"],
        manifests["test"],
    )
    assert {e["session"] for e in test.values()} == {5}
    assert {e["session"] for e in valid.values()} == {1, 2, 3, 4}
    assert not set(train) & set(valid)
    assert set(train) | set(valid) | set(test) == set(_kept(records))
    # Stratified per speaker: half (rounded) of each training speaker.
    per_speaker = Counter(
        r["speaker"] for r in _kept(records).values() if r["session"] != 5
    )
    in_valid = Counter(e["speaker"] for e in valid.values())
    assert in_valid == {s: round(0.5 * n) for s, n in per_speaker.items()}
    assert summary["totals"]["valid"] == len(valid)
    # Same seed, same split; another seed, another split.
    prep.prepare_iemocap(root, str(tmp_path / "b"), valid_split=0.5, seed=7)
    assert _load(str(tmp_path / "b"))["valid"] == valid
    prep.prepare_iemocap(root, str(tmp_path / "c"), valid_split=0.5, seed=8)
    assert set(_load(str(tmp_path / "c"))["valid"]) != set(valid)


def test_reprep_when_test_session_changes(corpus, tmp_path):
    root, _, _ = corpus
    save = str(tmp_path / "save")
    prep.prepare_iemocap(root, save, test_session=5)
    before = _load(save)
    summary = prep.prepare_iemocap(root, save, test_session=1)
    after = _load(save)
    assert summary["reused"] is False
    assert after["test"] != before["test"]
    assert after["valid"] != before["valid"]
    assert {e["speaker"] for e in after["test"].values()} == {
        "Ses01F",
        "Ses01M",
    }
    with open(os.path.join(save, "prepare_iemocap.json")) as f:
        assert json.load(f)["options"]["test_session"] == 1


def test_reprep_when_seed_changes(corpus, tmp_path):
    root, _, _ = corpus
    save = str(tmp_path / "save")
    prep.prepare_iemocap(root, save, valid_split=0.5, seed=1)
    before = _load(save)["valid"]
    summary = prep.prepare_iemocap(root, save, valid_split=0.5, seed=2)
    assert summary["reused"] is False
    assert set(_load(save)["valid"]) != set(before)


def test_reuse_when_nothing_changed(corpus, tmp_path):
    root, _, _ = corpus
    save = str(tmp_path / "save")
    first = prep.prepare_iemocap(root, save, test_session=3, valid_split=0.2)
    assert first["reused"] is False
    files = [
        os.path.join(save, name)
        for name in ("train.json", "valid.json", "test.json")
        + ("prepare_iemocap.json",)
    ]
    # Old mtimes make a rewrite visible whatever the clock resolution.
    for path in files:
        os.utime(path, (1_000_000_000, 1_000_000_000))
    second = prep.prepare_iemocap(root, save, test_session=3, valid_split=0.2)
    assert second["reused"] is True
    assert all(os.stat(p).st_mtime == 1_000_000_000 for p in files)
    first.pop("reused"), second.pop("reused")
    assert second == first


def test_reprep_when_manifest_missing(corpus, tmp_path):
    root, _, _ = corpus
    save = str(tmp_path / "save")
    prep.prepare_iemocap(root, save)
    valid = _load(save)["valid"]
    os.remove(os.path.join(save, "valid.json"))
    summary = prep.prepare_iemocap(root, save)
    assert summary["reused"] is False
    assert _load(save)["valid"] == valid


def test_skip_prep(corpus, tmp_path):
    root, _, _ = corpus
    save = tmp_path / "save"
    assert prep.prepare_iemocap(root, str(save), skip_prep=True) is None
    assert not save.exists()


def all_entries(save):
    entries = {}
    for split in ("train", "valid", "test"):
        with open(save / f"{split}.json", encoding="utf-8") as f:
            entries.update(json.load(f))
    return entries


def test_missing_wav_is_kept_for_the_screen(corpus_copy, tmp_path):
    root, records, _ = corpus_copy
    rec = next(r for r in records if r["code"] == "sad" and r["session"] == 3)
    wav = os.path.join(
        root, "Session3", "sentences", "wav", rec["dialog"], rec["utt"] + ".wav"
    )
    os.remove(wav)
    save = tmp_path / "save"
    prep.prepare_iemocap(root, str(save))
    entry = all_entries(save)[rec["utt"]]
    assert entry["duration"] is None
    assert entry["wav"].endswith(rec["utt"] + ".wav")


def test_missing_or_non_utf8_transcript_is_flagged_for_the_screen(
    corpus_copy, tmp_path
):
    root, records, _ = corpus_copy
    recs = [r for r in records if r["code"] == "neu" and r["session"] == 2]
    missing, garbled = (
        recs[0],
        next(r for r in recs[1:] if r["dialog"] == recs[0]["dialog"]),
    )
    trans = os.path.join(
        root, "Session2", "dialog", "transcriptions", missing["dialog"] + ".txt"
    )
    with open(trans, "rb") as f:
        lines = [
            line.replace(b"]: ", b"]: \xe9")
            if line.startswith(garbled["utt"].encode())
            else line
            for line in f
            if not line.startswith(missing["utt"].encode())
        ]
    with open(trans, "wb") as f:
        f.writelines(lines)
    save = tmp_path / "save"
    prep.prepare_iemocap(root, str(save))
    entries = all_entries(save)
    assert entries[missing["utt"]]["text"] is None
    assert entries[missing["utt"]]["transcript_file"] == trans
    assert entries[garbled["utt"]]["_not_utf8"] is True
    assert "_not_utf8" not in entries[missing["utt"]]


def test_no_session_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    # A user's mistake: train.py reports it in one line (reported_input_errors).
    with pytest.raises(MissingInputError, match="Session1"):
        prep.prepare_iemocap(str(tmp_path / "empty"), str(tmp_path / "s"))
    with pytest.raises(InputError, match="test_session must be an int"):
        prep.check_arguments(6, None, 1)


def test_missing_session_folders(corpus_copy, tmp_path):
    root, _, _ = corpus_copy
    shutil.rmtree(os.path.join(root, "Session3"))
    with pytest.raises(FileNotFoundError, match="Session3"):
        prep.prepare_iemocap(root, str(tmp_path / "a"), test_session=3)
    # Session 3 would be the default validation session of test session 2.
    with pytest.raises(FileNotFoundError, match="Session3"):
        prep.prepare_iemocap(root, str(tmp_path / "b"), test_session=2)
    summary = prep.prepare_iemocap(root, str(tmp_path / "c"))
    assert summary["sessions"]["train"] == [2, 4]
    train = _load(str(tmp_path / "c"))["train"]
    assert {e["session"] for e in train.values()} == {2, 4}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"test_session": 0},
        {"test_session": 6},
        {"test_session": "5"},
        {"test_session": True},
        {"test_session": 5.0},
        {"valid_split": 5},
        {"test_session": 2, "valid_split": 2},
        {"valid_split": 0},
        {"valid_split": 6},
        {"valid_split": 0.0},
        {"valid_split": 1.0},
        {"valid_split": 1.5},
        {"valid_split": -0.1},
        {"valid_split": "0.1"},
        {"valid_split": True},
        {"seed": "1234"},
        {"seed": 1.5},
    ],
)
def test_bad_arguments(corpus, tmp_path, kwargs):
    root, _, _ = corpus
    with pytest.raises(ValueError):
        prep.prepare_iemocap(root, str(tmp_path / "save"), **kwargs)
    assert not (tmp_path / "save").exists()
