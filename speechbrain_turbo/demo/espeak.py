"""espeak-ng, in process, through the ``espeakng-loader`` wheel (ctypes):
:class:`EspeakSynthesizer` renders text with a voice and prosody settings,
optionally from a private copy of the library (fresh global state).

Authors
 * speechbrain-turbo contributors
"""

import _ctypes
import ctypes
import os
import shutil
import tempfile

import numpy as np
from speechbrain.utils.logger import get_logger

logger = get_logger(__name__)

# espeak-ng's C interface (speak_lib.h).
_ESPEAK_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS: samples via callback
_ESPEAK_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_ESPEAK_PUNCTUATION, _ESPEAK_CAPITALS, _ESPEAK_WORDGAP = 5, 6, 7
_INSTALL_HINT = (
    "The demo corpus needs espeak-ng from the espeakng-loader package: "
    'pip install -e ".[demo]"'
)


# ---------------------------------------------------------------------------
# espeak-ng
# ---------------------------------------------------------------------------


def _import_espeakng_loader():
    """Imports ``espeakng_loader``, with an install hint when it is missing.

    Returns
    -------
    module
        The ``espeakng_loader`` module.

    Raises
    ------
    ImportError
        When the package is not installed.

    Example
    -------
    >>> _import_espeakng_loader().__name__
    'espeakng_loader'
    """
    try:
        import espeakng_loader
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return espeakng_loader


class EspeakSynthesizer:
    """In-process espeak-ng text-to-speech through ctypes.

    espeak-ng keeps waveform state (phase and flutter counters) in global
    variables, so an utterance's samples depend on what the library
    synthesised before. With ``private=True`` this instance loads its own
    copy of the library (a fresh file, hence fresh globals): its output
    then depends only on the sequence it was asked to synthesise, whatever
    else the process did. Close it (or use ``with``) to unload the copy.

    Arguments
    ---------
    private : bool
        Load a private copy of the library (reproducible) rather than the
        process-wide one.

    Example
    -------
    >>> with EspeakSynthesizer() as tts:
    ...     wav = tts.synthesize("Hello there.", voice="en+f2")
    >>> wav.dtype.name, tts.sample_rate, len(wav) > tts.sample_rate // 4
    ('int16', 22050, True)
    >>> with EspeakSynthesizer() as tts:
    ...     again = tts.synthesize("Hello there.", voice="en+f2")
    >>> bool((wav == again).all())
    True
    """

    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_short),
        ctypes.c_int,
        ctypes.c_void_p,
    )

    def __init__(self, private=True):
        loader = _import_espeakng_loader()
        self._private = private
        self._lib = lib = self._load(loader.get_library_path(), private)
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int] * 3
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_SetSynthCallback.argtypes = [self._CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        data_path = loader.get_data_path().encode()
        self.sample_rate = lib.espeak_Initialize(
            _ESPEAK_SYNCHRONOUS, 0, data_path, 0
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to start ({data_path})")
        self._chunks = []
        # Kept on self: ctypes would otherwise free the callback thunk.
        self._callback = self._CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    @staticmethod
    def _load(path, private):
        """Loads the library, or a private copy of it.

        Arguments
        ---------
        path : str
            The installed ``libespeak-ng`` file.
        private : bool
            Copy it to a temporary file and load that copy.

        Returns
        -------
        ctypes.CDLL
            The loaded library.

        Example
        -------
        >>> loader = _import_espeakng_loader()
        >>> lib = EspeakSynthesizer._load(loader.get_library_path(), True)
        >>> hasattr(lib, "espeak_Synth")
        True
        """
        if not private:
            return ctypes.CDLL(path)
        folder = tempfile.mkdtemp(prefix="espeak-ng-")
        copy = os.path.join(folder, os.path.basename(path))
        try:
            shutil.copyfile(path, copy)
            return ctypes.CDLL(copy)
        except OSError as error:
            raise OSError(
                f"Cannot load a private copy of espeak-ng from {folder} "
                f"({error}); point TMPDIR to a folder that allows loading "
                "libraries."
            ) from error
        finally:
            # Once loaded, the file is no longer needed (POSIX); where it
            # cannot be removed (Windows), it stays in the temp folder.
            shutil.rmtree(folder, ignore_errors=True)

    def close(self):
        """Stops espeak-ng and unloads a private copy of the library.

        Returns
        -------
        None

        Example
        -------
        >>> tts = EspeakSynthesizer()
        >>> tts.close()
        >>> tts.close()  # closing twice is harmless
        """
        lib, self._lib = getattr(self, "_lib", None), None
        if lib is None:
            return
        lib.espeak_Terminate()
        dlclose = getattr(_ctypes, "dlclose", None)
        if self._private and dlclose is not None:
            dlclose(lib._handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _collect(self, samples, num_samples, events):
        """Receives one block of samples from espeak-ng.

        Arguments
        ---------
        samples : ctypes pointer to c_short
            The block (NULL at the end of the utterance).
        num_samples : int
            Number of samples in the block.
        events : ctypes.c_void_p
            espeak events (unused).

        Returns
        -------
        int
            0, to let espeak continue.

        Example
        -------
        >>> with EspeakSynthesizer() as tts:
        ...     tts._collect((ctypes.c_short * 3)(1, 2, 3), 3, None)
        0
        >>> tts._chunks[-1].tolist()
        [1, 2, 3]
        """
        if num_samples > 0:
            block = np.ctypeslib.as_array(samples, shape=(num_samples,))
            self._chunks.append(block.copy())
        return 0

    def synthesize(
        self,
        text,
        voice,
        rate=175,
        pitch=50,
        pitch_range=50,
        volume=100,
        word_gap=0,
        seed=0,
    ):
        """Speaks one sentence; every setting is given explicitly.

        Arguments
        ---------
        text : str
            Plain text (no SSML).
        voice : str
            espeak voice and variant, e.g. ``"en+f2"`` or ``"en-us+m1"``.
        rate : int
            Speaking rate in words per minute (80-450).
        pitch : int
            Base pitch, 0-100.
        pitch_range : int
            Pitch range, 0 (monotone) to 100.
        volume : int
            Volume, 0-200 (espeak clips above about 130).
        word_gap : int
            Extra pause between words, in units of 10 ms.
        seed : int
            Seed of espeak's random generator.

        Returns
        -------
        numpy.ndarray
            int16 samples at ``self.sample_rate`` (22,050 Hz).

        Example
        -------
        >>> with EspeakSynthesizer() as tts:
        ...     slow = tts.synthesize("One two three.", "en+m3", rate=120)
        ...     fast = tts.synthesize("One two three.", "en+m3", rate=240)
        >>> len(slow) > len(fast)
        True
        """
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        settings = (
            (_ESPEAK_RATE, rate),
            (_ESPEAK_VOLUME, volume),
            (_ESPEAK_PITCH, pitch),
            (_ESPEAK_RANGE, pitch_range),
            (_ESPEAK_WORDGAP, word_gap),
            (_ESPEAK_PUNCTUATION, 0),
            (_ESPEAK_CAPITALS, 0),
        )
        for parameter, value in settings:
            lib.espeak_SetParameter(parameter, int(value), 0)
        lib.espeak_ng_SetRandSeed(int(seed))
        self._chunks = []
        data = text.encode("utf-8")
        status = lib.espeak_Synth(
            data,
            len(data) + 1,
            0,
            _ESPEAK_POS_CHARACTER,
            0,
            _ESPEAK_CHARS_UTF8,
            None,
            None,
        )
        if status != 0 or not self._chunks:
            raise RuntimeError(f"espeak-ng failed ({status}) on {text!r}")
        return np.concatenate(self._chunks)
