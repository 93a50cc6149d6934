"""A Checkpointer that recovers from the newest checkpoint it can load.

A run killed while it saves can leave its newest checkpoint broken: a
truncated parameter file, an empty ``CKPT.yaml``. SpeechBrain's
``Checkpointer`` then stops every resume with a traceback that does not name
the file, although older intact checkpoints are there. This one names the
broken checkpoint in one line and recovers from the next one in the same
order (the newest, or the next best by ``max_key`` / ``min_key``).

:class:`RandomStates` checkpoints every random generator a run draws from,
so that a resumed run continues as an uninterrupted one would.

Authors
 * speechbrain-turbo contributors
"""

import random

import numpy as np
import torch
import yaml
from speechbrain.utils.checkpoints import (
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
)
from speechbrain.utils.logger import get_logger
from speechbrain.utils.repro import SaveableGenerator

from speechbrain_turbo.errors import InputError

logger = get_logger(__name__)


class NoUsableCheckpoint(InputError, RuntimeError):
    """No checkpoint of a run's folder loads (a user's copy or disk to fix,
    not a bug).
    """


class FallbackCheckpointer(Checkpointer):
    """SpeechBrain's ``Checkpointer``, skipping checkpoints that fail to load.

    Arguments as for ``speechbrain.utils.checkpoints.Checkpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> model = torch.nn.Linear(2, 2)
    >>> saver = FallbackCheckpointer(tempfile.mkdtemp(), {"model": model})
    >>> older = saver.save_checkpoint(name="older")
    >>> newer = saver.save_checkpoint(name="newer")
    >>> _ = open(newer.paramfiles["model"], "wb").write(b"cut short")
    >>> saver.recover_if_possible().path.name  # the broken one is skipped
    'CKPT+older'
    """

    def _construct_checkpoint_objects(self, checkpoint_dirs):
        """Checkpoints whose ``CKPT.yaml`` reads as a mapping; the others
        are named in a warning and left out.
        """
        checkpoints = []
        for folder in checkpoint_dirs:
            try:
                with open(folder / METAFNAME, encoding="utf-8") as f:
                    meta = yaml.load(f, Loader=yaml.SafeLoader)
                if not isinstance(meta, dict):
                    raise ValueError("empty or not a mapping")
            except (OSError, ValueError, yaml.YAMLError) as error:
                logger.warning(
                    "Ignoring checkpoint %s: its %s cannot be read (%s)",
                    folder,
                    METAFNAME,
                    error,
                )
                continue
            paramfiles = {
                path.stem: path
                for path in folder.iterdir()
                if path.suffix == PARAMFILE_EXT
            }
            checkpoints.append(Checkpoint(folder, meta, paramfiles))
        return checkpoints

    def recover_if_possible(
        self,
        importance_key=None,
        max_key=None,
        min_key=None,
        ckpt_predicate=None,
    ):
        """Recovers from the first checkpoint, in the order SpeechBrain's
        ``recover_if_possible`` picks one, that loads.

        Arguments
        ---------
        importance_key, max_key, min_key, ckpt_predicate
            As for ``Checkpointer.recover_if_possible``.

        Returns
        -------
        Checkpoint or None
            The checkpoint recovered from; None when there is none.
        """
        candidates = self.find_checkpoints(
            importance_key, max_key, min_key, ckpt_predicate
        )
        if not candidates:
            logger.info("Would load a checkpoint here, but none found yet.")
            return None
        failures = []
        for checkpoint in candidates:
            try:
                self.load_checkpoint(checkpoint)
            except Exception as error:  # torch's and yaml's own error types
                failures.append(checkpoint.path)
                logger.warning(
                    "Checkpoint %s does not load (%s: %s); recovering from "
                    "the next one instead",
                    checkpoint.path,
                    type(error).__name__,
                    str(error).splitlines()[0] if str(error) else "",
                )
                continue
            return checkpoint
        raise NoUsableCheckpoint(
            f"None of the {len(failures)} checkpoint(s) in "
            f"{self.checkpoints_dir} loads (the log names each). Move them "
            "away to start over, or restore them from a copy."
        )


class _PythonRandomState:
    """Python's ``random`` generator, with a generator's get/set_state
    (in types torch's weights-only loader reads).
    """

    def get_state(self):
        """The state as ``[version, list of ints, gauss]``."""
        version, state, gauss = random.getstate()
        return [version, list(state), gauss]

    def set_state(self, state):
        """Restores a state from :meth:`get_state`."""
        version, internal, gauss = state
        random.setstate((version, tuple(internal), gauss))


class _NumpyRandomState:
    """NumPy's global generator, with a generator's get/set_state."""

    def get_state(self):
        """The state, its key as an int64 tensor."""
        name, key, position, has_gauss, cached = np.random.get_state()
        key = torch.from_numpy(key.astype(np.int64))
        return [name, key, position, has_gauss, cached]

    def set_state(self, state):
        """Restores a state from :meth:`get_state`."""
        name, key, position, has_gauss, cached = state
        key = key.numpy().astype(np.uint32)
        np.random.set_state((name, key, position, has_gauss, cached))


class RandomStates(SaveableGenerator):
    """The state of every random generator a run draws from, as one
    checkpoint recoverable: SpeechBrain's ``SaveableGenerator`` (torch's
    generators, CPU and each GPU: dropout masks, torch-based augmentation)
    with Python's ``random`` (SpeechBrain's ``Augmenter`` draws which
    augmentations to apply from it) and NumPy's added. With torch's alone,
    a resumed run with an ``Augmenter`` drew other augmentations than an
    uninterrupted one.

    Example
    -------
    >>> import os, tempfile
    >>> states = RandomStates()
    >>> path = os.path.join(tempfile.mkdtemp(), "rng.ckpt")
    >>> states.save(path)
    >>> drawn = random.random(), float(torch.rand(1)), np.random.rand()
    >>> states.load(path, end_of_epoch=True)
    >>> drawn == (random.random(), float(torch.rand(1)), np.random.rand())
    True
    """

    def __init__(self):
        super().__init__()
        self.generators["python"] = _PythonRandomState()
        self.generators["numpy"] = _NumpyRandomState()
