"""Tests of the synthetic IEMOCAP-layout demo corpus."""

import json
import os
import re
import sys
import wave
from collections import Counter

import pytest

from speechbrain_turbo.demo import corpus as demo_corpus
from speechbrain_turbo.demo import layout, main, synthesize_corpus
from speechbrain_turbo.demo.espeak import EspeakSynthesizer
from speechbrain_turbo.demo.plan import DialogSpec, UtteranceSpec, plan_corpus
from speechbrain_turbo.demo.settings import MARKER_NAME, SCRIPT_POOL_SIZE

# The formats as a reader of the real corpus would parse them.
SUMMARY_RE = re.compile(
    r"^\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(\S+)\t(\w{3})\t"
    r"\[(\d\.\d{4}), (\d\.\d{4}), (\d\.\d{4})\]$"
)
CATEGORY_RE = re.compile(r"^C-E\d:\t[A-Z][a-z ]+;\t\(.*\)$")
ATTRIBUTE_RE = re.compile(r"^A-E\d:\tval \d; act \d; dom  \d;\t\(.*\)$")
TRANSCRIPT_RE = re.compile(r"^(\S+) \[(\d{3}\.\d{4})-(\d{3}\.\d{4})\]: (.+)$")
DIALOG_RE = re.compile(r"^Ses0(\d)([FM])_(impro\d\d|script\d\d_\d)$")
CODES = {"neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis"}
CODES |= {"oth", "xxx"}
UPS = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny corpus shared by the read-only tests."""
    root = tmp_path_factory.mktemp("demo") / "corpus"
    summary = synthesize_corpus(root, utterances_per_speaker=UPS, seed=7)
    return root, summary


def wav_files(root):
    """Relative paths of all wav files."""
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith(".wav")
    )


def all_files(root):
    """{relative path: bytes} of every file under root."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


def read_labels(root):
    """Summary lines of the plain EmoEvaluation files: {utt: fields}."""
    labels = {}
    for session in range(1, 6):
        folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        for path in sorted(folder.glob("*.txt")):
            for line in path.read_text().splitlines():
                match = SUMMARY_RE.match(line)
                if match:
                    start, end, utt, code = match.groups()[:4]
                    labels[utt] = (session, path.stem, code, start, end)
    return labels


def mean(values):
    """Arithmetic mean."""
    return sum(values) / len(values)


def wav_seconds(path):
    """Duration of a wav file."""
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def test_layout_and_formats(corpus):
    root, _ = corpus
    assert (root / MARKER_NAME).is_file()
    labels = read_labels(root)
    assert len(labels) == 10 * UPS
    for session in range(1, 6):
        wav_root = root / f"Session{session}" / "sentences" / "wav"
        dialogs = sorted(p.name for p in wav_root.iterdir())
        assert dialogs
        for dialog in dialogs:
            match = DIALOG_RE.match(dialog)
            assert match and int(match.group(1)) == session, dialog
            genders = set()
            for wav_path in (wav_root / dialog).iterdir():
                assert re.fullmatch(
                    rf"{dialog}_[FM]\d{{3}}\.wav", wav_path.name
                )
                genders.add(wav_path.name[-8])
                with wave.open(str(wav_path)) as handle:
                    assert handle.getframerate() == 16000
                    assert handle.getnchannels() == 1
                    assert handle.getsampwidth() == 2
                    assert handle.getcomptype() == "NONE"
                    assert handle.getnframes() > 16000 // 4
            # Both speakers of the session speak in every dialog.
            assert genders == {"F", "M"}, dialog
        emo_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        for sub in ("Categorical", "Attribute", "Self-evaluation"):
            assert any((emo_dir / sub).iterdir()), sub
        for dialog in dialogs:
            lines = (emo_dir / f"{dialog}.txt").read_text().splitlines()
            assert lines[0] == (
                "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
            )
            assert lines[1] == ""
            # Blocks: a summary line, then annotator detail lines that a
            # reader must not mistake for summary lines.
            blocks = "\n".join(lines[2:]).strip("\n").split("\n\n")
            for block in blocks:
                summary, *details = block.split("\n")
                assert SUMMARY_RE.match(summary), summary
                assert any(CATEGORY_RE.match(x) for x in details), block
                assert any(ATTRIBUTE_RE.match(x) for x in details), block
                assert not any(SUMMARY_RE.match(x) for x in details)
    # One label per wav, every wav labelled, codes from IEMOCAP's set.
    on_disk = {os.path.basename(p)[:-4] for p in wav_files(root)}
    assert set(labels) == on_disk
    assert {fields[2] for fields in labels.values()} <= CODES


def test_timestamps_and_transcripts(corpus):
    root, _ = corpus
    labels = read_labels(root)
    seen = set()
    for utt, (session, dialog, _, start, end) in labels.items():
        wav_path = (
            root / f"Session{session}" / "sentences" / "wav" / dialog
        ) / f"{utt}.wav"
        assert float(end) - float(start) == pytest.approx(
            wav_seconds(wav_path), abs=2e-4
        )
    for session in range(1, 6):
        folder = root / f"Session{session}" / "dialog" / "transcriptions"
        for path in sorted(folder.glob("*.txt")):
            previous_end = 0.0
            for line in path.read_text().splitlines():
                match = TRANSCRIPT_RE.match(line)
                assert match, line
                name, start, end, text = match.groups()
                assert name.startswith(path.stem + "_")
                # Consecutive: no turn starts before the previous ended.
                assert float(start) >= previous_end
                previous_end = float(end)
                if name in labels:
                    assert (start, end) == tuple(
                        f"{float(t):08.4f}" for t in labels[name][3:]
                    )
                    assert text and not text.startswith("[")
                    seen.add(name)
                else:
                    # Not an utterance: a non-verbal event without wav.
                    assert re.fullmatch(r".*_[FM]XX\d+", name), name
                    assert re.fullmatch(r"\[[A-Z]+\]", text), text
    assert seen == set(labels)


def test_nonverbal_lines_are_written():
    spec = UtteranceSpec("d_F000", "d", 1, "F", text="Hello.")
    spec.nonverbal = ("d_MXX0", "[BREATHING]")
    dialog = DialogSpec("d", 1, False, 1.0, [spec])
    entries = layout._timeline(dialog, {"d_F000": 32000})
    lines = layout.format_transcription(entries).splitlines()
    assert lines[0] == "d_F000 [001.0000-003.0000]: Hello."
    assert re.fullmatch(
        r"d_MXX0 \[003\.0500-\d{3}\.\d{4}\]: \[BREATHING\]", lines[1]
    )
    # The EmoEvaluation file lists utterances only.
    assert "XX" not in layout.format_emo_evaluation(entries)


def test_summary_counts_match_files(corpus):
    root, summary = corpus
    labels = read_labels(root)
    wavs = wav_files(root)
    assert summary["num_wav_files"] == len(wavs) == summary["num_utterances"]
    codes = Counter(fields[2] for fields in labels.values())
    assert {c: n for c, n in summary["per_emotion"].items() if n} == dict(codes)
    per_session = Counter(p.split(os.sep)[0] for p in wavs)
    assert {s: n for s, n in summary["per_session"].items() if n} == dict(
        per_session
    )
    four = summary["four_class"]
    assert four["hap"] == codes["hap"] + codes["exc"]
    assert summary["num_four_class"] == sum(four.values())
    assert summary["num_dropped"] == len(wavs) - sum(four.values())
    seconds = sum(wav_seconds(root / p) for p in wavs)
    assert summary["total_duration_s"] == pytest.approx(seconds, abs=1e-2)
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["complete"] is True
    assert marker["summary"] == {
        k: v for k, v in summary.items() if k not in ("output", "reused")
    }


def test_deterministic_by_seed(corpus, tmp_path):
    root, _ = corpus
    same = tmp_path / "same"
    # espeak-ng used beforehand in this process must not change the output.
    with EspeakSynthesizer(private=False) as tts:
        tts.synthesize("Something else first.", "en+m3")
    synthesize_corpus(same, utterances_per_speaker=UPS, seed=7)
    reference, repeat = all_files(root), all_files(same)
    assert sorted(reference) == sorted(repeat)
    assert all(reference[p] == repeat[p] for p in reference)
    other = tmp_path / "other"
    synthesize_corpus(other, utterances_per_speaker=UPS, seed=8)
    changed = all_files(other)
    common = [p for p in reference if p.endswith(".wav") and p in changed]
    assert sum(reference[p] != changed[p] for p in common) >= len(common) / 2
    assert reference[MARKER_NAME] != changed[MARKER_NAME]


def test_private_espeak_ignores_earlier_synthesis():
    def speak(warm_up):
        with EspeakSynthesizer() as tts:
            if warm_up:
                tts.synthesize("A different sentence first.", "en+f2")
            return tts.synthesize("Hello there.", "en+m3", seed=1).tobytes()

    with EspeakSynthesizer() as tts:
        fresh = tts.synthesize("Hello there.", "en+m3", seed=1).tobytes()
    # Same history, same bytes; espeak's state does carry over within one
    # instance, which is why each speaker gets its own private copy.
    assert speak(False) == fresh
    assert speak(True) != fresh


def test_reuses_a_matching_corpus(corpus, monkeypatch):
    root, summary = corpus
    stamps = {p: os.stat(root / p).st_mtime_ns for p in all_files(root)}

    def no_render(*args, **kwargs):
        raise AssertionError("a matching corpus was re-synthesised")

    monkeypatch.setattr(demo_corpus, "_render_chunk", no_render)
    again = synthesize_corpus(root, utterances_per_speaker=UPS, seed=7)
    assert again["reused"] is True and summary["reused"] is False
    assert {k: v for k, v in again.items() if k != "reused"} == {
        k: v for k, v in summary.items() if k != "reused"
    }
    assert stamps == {p: os.stat(root / p).st_mtime_ns for p in all_files(root)}


def test_resynthesises_when_parameters_change(tmp_path):
    root = tmp_path / "corpus"
    synthesize_corpus(root, utterances_per_speaker=2, seed=1)
    (root / "my_notes.txt").write_text("kept")
    old = set(wav_files(root))
    summary = synthesize_corpus(root, utterances_per_speaker=1, seed=1)
    assert summary["reused"] is False
    assert summary["num_utterances"] == 10
    new = set(wav_files(root))
    # No stale file of the first corpus survives; other files do.
    assert len(new) == 10 and new < old
    assert set(read_labels(root)) == {os.path.basename(p)[:-4] for p in new}
    assert (root / "my_notes.txt").read_text() == "kept"
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["parameters"]["utterances_per_speaker"] == 1
    # A corpus whose files no longer match its marker is remade too.
    missing = root / sorted(new)[0]
    missing.unlink()
    assert synthesize_corpus(root, 1, seed=1)["reused"] is False
    assert missing.is_file()


def test_refuses_a_foreign_folder(tmp_path):
    foreign = tmp_path / "IEMOCAP_full_release"
    (foreign / "Session1").mkdir(parents=True)
    (foreign / "Session1" / "data.txt").write_text("user data")
    with pytest.raises(FileExistsError, match=re.escape(str(foreign))):
        synthesize_corpus(foreign, utterances_per_speaker=1)
    assert (foreign / "Session1" / "data.txt").read_text() == "user data"
    assert sorted(os.listdir(foreign)) == ["Session1"]


def test_missing_espeak_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(
        ImportError, match=re.escape('pip install -e ".[demo]"')
    ):
        synthesize_corpus(tmp_path / "corpus", utterances_per_speaker=1)
    assert not (tmp_path / "corpus").exists()


def test_default_plan_counts_and_texts():
    dialogs = plan_corpus(utterances_per_speaker=150, seed=1234)
    specs = [u for d in dialogs for u in d.utterances]
    codes = Counter(u.emotion for u in specs)
    assert dict(codes) == {
        "neu": 440,
        "hap": 150,
        "exc": 270,
        "ang": 280,
        "sad": 280,
        "fru": 30,
        "sur": 20,
        "xxx": 30,
    }
    assert 0.03 < (codes["fru"] + codes["sur"] + codes["xxx"]) / 1500 < 0.08
    # Ten distinct voices, both speakers of a session in every dialog.
    assert len({u.voice for u in specs}) == 10
    assert all({u.gender for u in d.utterances} == {"F", "M"} for d in dialogs)
    # Many distinct sentences; script lines recur across sessions and are
    # spoken with several emotions.
    assert len({u.text for u in specs}) > 500
    script = [u for u in specs if "_script" in u.dialog]
    impro = [u for u in specs if "_impro" in u.dialog]
    assert script and impro
    sessions_of = {}
    emotions_of = {}
    for u in script:
        sessions_of.setdefault(u.text, set()).add(u.session)
        emotions_of.setdefault(u.text, set()).add(u.emotion)
    assert max(len(s) for s in sessions_of.values()) >= 3
    assert max(len(e) for e in emotions_of.values()) >= 3
    assert len({u.text for u in impro}) > 0.8 * len(impro)
    assert len({u.text for u in script}) <= SCRIPT_POOL_SIZE
    # Prosody follows the emotion on average (sad slower and quieter than
    # ang) but overlaps between utterances.
    rate = {c: [u.rate for u in specs if u.emotion == c] for c in codes}
    volume = {c: [u.volume for u in specs if u.emotion == c] for c in codes}
    assert mean(rate["sad"]) < mean(rate["neu"]) < mean(rate["ang"])
    assert mean(volume["sad"]) < mean(volume["neu"]) < mean(volume["ang"])
    assert max(volume["sad"]) > min(volume["ang"])
    # Only part of the texts carry emotion words; none for most neu.
    lexicon_words = ("furious", "wonderful", "miss ", "excited", "amazing")
    emotional = [u for u in specs if any(w in u.text for w in lexicon_words)]
    assert 0 < len(emotional) < 0.5 * len(specs)


def test_cli(tmp_path):
    summary = main(
        [
            "--output",
            str(tmp_path / "cli"),
            "--utterances-per-speaker",
            "1",
            "--seed",
            "3",
        ]
    )
    assert summary["num_utterances"] == 10
    assert len(wav_files(tmp_path / "cli")) == 10
