"""The demo corpus' plan: which dialogs, speakers, emotions, sentences,
prosody and recording conditions, drawn deterministically from a seed
before any audio is rendered.

Authors
 * speechbrain-turbo contributors
"""

from dataclasses import dataclass, field

import numpy as np

from speechbrain_turbo.demo.settings import (
    CATEGORY_NAMES,
    EMOTION_PROSODY,
    EMOTION_SHARES,
    GAIN_DB_JITTER,
    NONVERBAL_LABELS,
    NONVERBAL_PROB,
    NUM_SESSIONS,
    PROSODY_JITTER,
    SNR_DB_RANGE,
    SPEAKERS,
    TURN_GAP_RANGE,
    UTTERANCES_PER_SPEAKER_PER_DIALOG,
    VAD_CENTRES,
)
from speechbrain_turbo.demo.text import (
    _pick,
    choose_lexicon,
    emotional_sentence,
    neutral_sentence,
    script_pool,
)


@dataclass
class UtteranceSpec:
    """Everything needed to render and annotate one utterance.

    Arguments
    ---------
    utt_id : str
        e.g. ``Ses01F_impro01_F000``.
    dialog : str
        e.g. ``Ses01F_impro01``.
    session : int
        1-5.
    gender : str
        ``F`` or ``M``.
    emotion : str
        IEMOCAP code.
    text : str
        Transcript.
    voice : str
        espeak voice.
    rate, pitch, pitch_range, volume, word_gap : int
        espeak settings.
    espeak_seed, noise_seed : int
        Seeds of espeak's generator and of the noise.
    gain_db, snr_db, noise_colour : float
        Recording gain, signal-to-noise ratio, noise colour (0 white,
        1 pink).
    gap_before : float
        Pause before the turn, in seconds.
    categories : tuple of str
        Category names given by three annotators.
    self_category : str
        The actor's own label (Self-evaluation file).
    ratings : tuple of tuple of int
        Valence, activation, dominance of two annotators.
    nonverbal : str or None
        Label of a non-utterance transcript line after this turn.

    Example
    -------
    >>> spec = UtteranceSpec("Ses01F_impro01_F000", "Ses01F_impro01", 1, "F")
    >>> spec.emotion
    'neu'
    """

    utt_id: str
    dialog: str
    session: int
    gender: str
    emotion: str = "neu"
    text: str = ""
    voice: str = "en"
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    volume: int = 70
    word_gap: int = 0
    espeak_seed: int = 0
    noise_seed: int = 0
    gain_db: float = 0.0
    snr_db: float = 20.0
    noise_colour: float = 0.0
    gap_before: float = 0.5
    categories: tuple = ("Neutral state",) * 3
    self_category: str = "Neutral state"
    ratings: tuple = ((3, 3, 3), (3, 3, 3))
    nonverbal: object = None


@dataclass
class DialogSpec:
    """One dialog: its name, session, start offset and turns in order.

    Arguments
    ---------
    name : str
        e.g. ``Ses01M_script01_2``.
    session : int
        1-5.
    script : bool
        Whether its lines come from the shared script pool.
    start : float
        Start time of the first turn, in seconds.
    utterances : list of UtteranceSpec
        Turns in time order.

    Example
    -------
    >>> DialogSpec("Ses01F_impro01", 1, False, 2.0).utterances
    []
    """

    name: str
    session: int
    script: bool
    start: float
    utterances: list = field(default_factory=list)


def emotion_quotas(total):
    """Exact number of utterances per emotion code for a corpus size.

    Largest-remainder rounding of ``EMOTION_SHARES``; ties go to the code
    listed first.

    Arguments
    ---------
    total : int
        Number of utterances in the corpus.

    Returns
    -------
    dict
        ``{code: count}``, summing to ``total``.

    Example
    -------
    >>> emotion_quotas(1500)["neu"], sum(emotion_quotas(37).values())
    (440, 37)
    """
    weight = sum(EMOTION_SHARES.values())
    exact = {c: total * s / weight for c, s in EMOTION_SHARES.items()}
    quotas = {c: int(np.floor(x)) for c, x in exact.items()}
    order = sorted(exact, key=lambda c: -(exact[c] - quotas[c]))
    for code in order[: total - sum(quotas.values())]:
        quotas[code] += 1
    return quotas


def dialog_names(session, count):
    """IEMOCAP-style dialog names of one session.

    Alternates the leading speaker (F, M) and the kind (impro, script):
    ``Ses01F_impro01, Ses01M_impro01, Ses01F_script01_1, ...``.

    Arguments
    ---------
    session : int
        Session number, 1-5.
    count : int
        Number of dialogs.

    Returns
    -------
    list of (str, bool)
        Dialog names and whether each one is scripted.

    Example
    -------
    >>> dialog_names(2, 4)[2:]
    [('Ses02F_script01_1', True), ('Ses02M_script01_1', True)]
    """
    names = []
    for index in range(count):
        lead = "FM"[index % 2]
        pair = index // 2
        prefix = f"Ses{session:02d}{lead}"
        if pair % 2 == 0:
            names.append((f"{prefix}_impro{pair // 2 + 1:02d}", False))
        else:
            script = pair // 2
            number, part = script // 2 + 1, script % 2 + 1
            names.append((f"{prefix}_script{number:02d}_{part}", True))
    return names


def _turn_order(rng, num_f, num_m, lead):
    """Speaker order of a dialog's turns, mostly alternating.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    num_f, num_m : int
        Turns of the female and the male speaker.
    lead : str
        Gender of the first turn (when it has turns).

    Returns
    -------
    list of str
        ``"F"``/``"M"`` per turn.

    Example
    -------
    >>> order = _turn_order(np.random.default_rng(0), 3, 2, "M")
    >>> order[0], order.count("F"), order.count("M")
    ('M', 3, 2)
    """
    left = {"F": num_f, "M": num_m}
    order = []
    current = lead if left[lead] else ("M" if lead == "F" else "F")
    while left["F"] + left["M"]:
        if not left[current]:
            current = "M" if current == "F" else "F"
        order.append(current)
        left[current] -= 1
        other = "M" if current == "F" else "F"
        # Mostly alternate; sometimes the same speaker goes on.
        if left[other] and rng.random() < 0.85:
            current = other
    return order


def _annotations(emotion, rng):
    """Annotator categories, self label and dimensional ratings.

    Arguments
    ---------
    emotion : str
        The consensus code.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    categories : tuple of str
        Three annotators' category names; for a real code at least two
        agree with it, for ``xxx`` all three differ.
    self_category : str
        The actor's own category name.
    ratings : tuple of tuple of int
        Two annotators' (valence, activation, dominance), 1-5.

    Example
    -------
    >>> cats, own, ratings = _annotations("ang", np.random.default_rng(0))
    >>> cats.count("Anger") >= 2, len(ratings)
    (True, 2)
    """
    names = list(CATEGORY_NAMES.values())
    if emotion == "xxx":
        picks = rng.choice(len(names), size=3, replace=False)
        categories = tuple(names[int(i)] for i in picks)
        own = _pick(rng, names)
    else:
        target = CATEGORY_NAMES[emotion]
        others = [n for n in names if n != target]
        categories = [target, target, target]
        if rng.random() < 0.5:
            categories[int(rng.integers(3))] = _pick(rng, others)
        categories = tuple(categories)
        own = target if rng.random() < 0.7 else _pick(rng, others)
    centre = np.asarray(VAD_CENTRES[emotion])
    ratings = tuple(
        tuple(
            int(v)
            for v in np.clip(np.rint(centre + rng.normal(0, 0.6, 3)), 1, 5)
        )
        for _ in range(2)
    )
    return categories, own, ratings


def plan_corpus(utterances_per_speaker, seed):
    """Draws the whole corpus: dialogs, turns, labels, texts, prosody.

    Every random choice is made here, from ``seed`` alone, so that the
    rendering only executes the plan.

    Arguments
    ---------
    utterances_per_speaker : int
        Utterances of each of the 10 speakers.
    seed : int
        Random seed.

    Returns
    -------
    list of DialogSpec
        Dialogs of all sessions, in session order.

    Example
    -------
    >>> dialogs = plan_corpus(utterances_per_speaker=4, seed=0)
    >>> sum(len(d.utterances) for d in dialogs)
    40
    >>> sorted({d.session for d in dialogs})
    [1, 2, 3, 4, 5]
    """
    rng = np.random.default_rng(seed)
    # Script lines are drawn once, from their own stream, and shared by
    # all sessions.
    scripts = script_pool(np.random.default_rng([seed, 1]))
    total = utterances_per_speaker * len(SPEAKERS)
    labels = [c for c, n in emotion_quotas(total).items() for _ in range(n)]
    labels = [labels[int(i)] for i in rng.permutation(total)]
    # Speaker i gets the i-th slice of the shuffled labels.
    n = utterances_per_speaker
    labels_of = {i: labels[i * n : (i + 1) * n] for i in range(len(SPEAKERS))}
    num_dialogs = max(
        min(utterances_per_speaker, 3),
        int(round(utterances_per_speaker / UTTERANCES_PER_SPEAKER_PER_DIALOG)),
    )
    dialogs = []
    for session in range(1, NUM_SESSIONS + 1):
        speakers = {
            row[1]: (index, row)
            for index, row in enumerate(SPEAKERS)
            if row[0] == session
        }
        # Each speaker's utterances spread evenly over the dialogs.
        split = {
            g: np.array_split(np.arange(utterances_per_speaker), num_dialogs)
            for g in speakers
        }
        for d, (name, script) in enumerate(dialog_names(session, num_dialogs)):
            dialog = DialogSpec(name, session, script, rng.uniform(1.0, 4.0))
            order = _turn_order(
                rng, len(split["F"][d]), len(split["M"][d]), name[5]
            )
            counters = {"F": 0, "M": 0}
            nonverbal_counter = 0
            for gender in order:
                index, row = speakers[gender]
                position = split[gender][d][counters[gender]]
                utt = _plan_utterance(
                    rng,
                    dialog,
                    f"{name}_{gender}{counters[gender]:03d}",
                    gender,
                    row,
                    labels_of[index][position],
                    scripts,
                )
                counters[gender] += 1
                if utt.nonverbal is not None:
                    utt.nonverbal = (
                        f"{name}_{_pick(rng, 'FM')}XX{nonverbal_counter}",
                        utt.nonverbal,
                    )
                    nonverbal_counter += 1
                dialog.utterances.append(utt)
            dialogs.append(dialog)
    return dialogs


def _plan_utterance(rng, dialog, utt_id, gender, speaker, emotion, scripts):
    """Draws the text, prosody, noise and annotations of one utterance.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    dialog : DialogSpec
        The dialog it belongs to.
    utt_id : str
        Utterance name.
    gender : str
        ``F`` or ``M``.
    speaker : tuple
        Its row of ``SPEAKERS``.
    emotion : str
        Its emotion code.
    scripts : dict
        Script pool from ``script_pool``.

    Returns
    -------
    UtteranceSpec
        The utterance plan.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> dialog = DialogSpec("Ses01F_impro01", 1, False, 1.0)
    >>> spec = _plan_utterance(
    ...     rng, dialog, "Ses01F_impro01_F000", "F", SPEAKERS[0], "sad", {}
    ... )
    >>> spec.voice, spec.rate < 300
    ('en+f2', True)
    """
    lexicon = choose_lexicon(emotion, rng)
    if dialog.script:
        # Script lines repeat across sessions, not within one dialog.
        used = {u.text for u in dialog.utterances}
        lines = scripts[lexicon]
        text = _pick(rng, [t for t in lines if t not in used] or lines)
    elif lexicon is None:
        text = neutral_sentence(rng)
    else:
        text = emotional_sentence(lexicon, rng)
    _, _, voice, base_rate, base_pitch, base_range, base_volume = speaker
    d_rate, d_pitch, d_range, d_volume, gap = EMOTION_PROSODY[emotion]
    jitter = {k: rng.normal(0.0, sd) for k, sd in PROSODY_JITTER.items()}
    rate = base_rate * (1.0 + (d_rate + jitter["rate"]) / 100.0)
    pitch = base_pitch + d_pitch + jitter["pitch"]
    pitch_range = base_range + d_range + jitter["range"]
    volume = base_volume + d_volume + jitter["volume"]
    categories, self_category, ratings = _annotations(emotion, rng)
    nonverbal = None
    if rng.random() < NONVERBAL_PROB:
        nonverbal = _pick(rng, NONVERBAL_LABELS)
    return UtteranceSpec(
        utt_id=utt_id,
        dialog=dialog.name,
        session=dialog.session,
        gender=gender,
        emotion=emotion,
        text=text,
        voice=voice,
        rate=int(np.clip(round(rate), 80, 400)),
        pitch=int(np.clip(round(pitch), 0, 100)),
        pitch_range=int(np.clip(round(pitch_range), 0, 100)),
        volume=int(np.clip(round(volume), 10, 130)),
        word_gap=int(gap),
        espeak_seed=int(rng.integers(2**31 - 1)),
        noise_seed=int(rng.integers(2**63 - 1)),
        gain_db=float(rng.normal(0.0, GAIN_DB_JITTER)),
        snr_db=float(rng.uniform(*SNR_DB_RANGE)),
        noise_colour=float(rng.random()),
        gap_before=float(rng.uniform(*TURN_GAP_RANGE)),
        categories=categories,
        self_category=self_category,
        ratings=ratings,
        nonverbal=nonverbal,
    )
