"""Rendering of the demo corpus' audio: espeak-ng speech at 16 kHz, gain,
coloured noise at a drawn SNR, 16-bit WAV files.

Authors
 * speechbrain-turbo contributors
"""

import numpy as np
import torch
import torchaudio
from speechbrain.dataio import audio_io

from speechbrain_turbo.demo.espeak import EspeakSynthesizer
from speechbrain_turbo.demo.plan import UtteranceSpec  # noqa: F401 (doctests)
from speechbrain_turbo.demo.settings import SAMPLE_RATE


def coloured_noise(length, colour, rng):
    """Unit-variance noise between white (0) and pink (1).

    Arguments
    ---------
    length : int
        Number of samples.
    colour : float
        Mixing weight of the pink component, 0-1.
    rng : numpy.random.Generator
        Random generator.

    Returns
    -------
    numpy.ndarray
        float64 noise with unit variance.

    Example
    -------
    >>> noise = coloured_noise(16000, 0.5, np.random.default_rng(0))
    >>> round(float(noise.std()), 2)
    1.0
    """
    white = rng.standard_normal(length)
    # Paul Kellett's "economy" pinking filter: -3 dB/octave over the band.
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    pink = torchaudio.functional.lfilter(
        torch.from_numpy(rng.standard_normal(length)),
        a_coeffs=torch.tensor(a, dtype=torch.float64),
        b_coeffs=torch.tensor(b, dtype=torch.float64),
        clamp=False,
    ).numpy()
    pink /= pink.std() + 1e-12
    noise = np.sqrt(1.0 - colour) * white + np.sqrt(colour) * pink
    return noise / (noise.std() + 1e-12)


def render_utterance(tts, spec):
    """Synthesises one utterance: espeak, 16 kHz, gain, noise, int16.

    Arguments
    ---------
    tts : EspeakSynthesizer
        The synthesiser.
    spec : UtteranceSpec
        What to say and how.

    Returns
    -------
    numpy.ndarray
        int16 samples at 16 kHz.

    Example
    -------
    >>> spec = UtteranceSpec("u", "d", 1, "F", text="Hi there.")
    >>> with EspeakSynthesizer() as tts:
    ...     wav = render_utterance(tts, spec)
    >>> wav.dtype.name, int(np.abs(wav).max()) <= 32000
    ('int16', True)
    """
    raw = tts.synthesize(
        spec.text,
        spec.voice,
        rate=spec.rate,
        pitch=spec.pitch,
        pitch_range=spec.pitch_range,
        volume=spec.volume,
        word_gap=spec.word_gap,
        seed=spec.espeak_seed,
    )
    # espeak-ng speaks at 22,050 Hz.
    speech = torchaudio.functional.resample(
        torch.from_numpy(raw.astype(np.float64)), tts.sample_rate, SAMPLE_RATE
    ).numpy()
    speech *= 10.0 ** (spec.gain_db / 20.0)
    rng = np.random.default_rng(spec.noise_seed)
    noise = coloured_noise(len(speech), spec.noise_colour, rng)
    power = float(np.mean(speech**2))
    noisy = speech + noise * np.sqrt(power / 10.0 ** (spec.snr_db / 10.0))
    # Peak-safe: scale down the whole utterance rather than clip.
    peak = float(np.abs(noisy).max())
    if peak > 32000.0:
        noisy *= 32000.0 / peak
    return np.clip(np.rint(noisy), -32767, 32767).astype("<i2")


def _render_chunk(jobs):
    """Renders a list of utterances in order, with a private espeak-ng.

    Arguments
    ---------
    jobs : list of (UtteranceSpec, str)
        Utterance plans and their wav paths.

    Returns
    -------
    dict
        ``{utt_id: number of samples}``.

    Example
    -------
    >>> import os
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "u.wav")
    >>> spec = UtteranceSpec("u", "d", 1, "F", text="Hi.")
    >>> _render_chunk([(spec, path)])["u"] > 0
    True
    """
    lengths = {}
    with EspeakSynthesizer(private=True) as tts:
        for spec, path in jobs:
            samples = render_utterance(tts, spec)
            audio_io.save(path, samples, SAMPLE_RATE, subtype="PCM_16")
            lengths[spec.utt_id] = len(samples)
    return lengths
