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
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.logger import get_logger

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


@register_checkpoint_hooks
class RandomStates:
    """The state of every random generator a run draws from, as one
    checkpoint recoverable: torch's (CPU and each GPU: dropout masks,
    torch-based augmentation), Python's ``random`` (SpeechBrain's
    ``Augmenter`` draws which augmentations to apply from it) and NumPy's.
    SpeechBrain's ``SaveableGenerator`` keeps torch's only, so a resumed
    run with an ``Augmenter`` drew other augmentations than an
    uninterrupted one.

    Example
    -------
    >>> import os, tempfile
    >>> states = RandomStates()
    >>> path = os.path.join(tempfile.mkdtemp(), "rng.ckpt")
    >>> states.save(path)
    >>> drawn = random.random(), float(torch.rand(1)), np.random.rand()
    >>> states.load(path)
    >>> drawn == (random.random(), float(torch.rand(1)), np.random.rand())
    True
    """

    @mark_as_saver
    def save(self, path):
        """Writes the states to ``path``.

        Arguments
        ---------
        path : str
            The checkpoint file.
        """
        version, python_state, gauss = random.getstate()
        name, key, position, has_gauss, cached = np.random.get_state()
        torch.save(
            {
                "torch": torch.get_rng_state(),
                "cuda": [
                    torch.cuda.get_rng_state(device)
                    for device in range(torch.cuda.device_count())
                ],
                "python": [version, list(python_state), gauss],
                "numpy": [
                    name,
                    torch.from_numpy(key.astype(np.int64)),
                    position,
                    has_gauss,
                    cached,
                ],
            },
            path,
        )

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the states saved in ``path``.

        Arguments
        ---------
        path : str
            The checkpoint file.
        end_of_epoch : bool
            Unused (SpeechBrain's loader signature).
        """
        del end_of_epoch
        states = torch.load(path, map_location="cpu", weights_only=True)
        torch.set_rng_state(states["torch"])
        for device, state in enumerate(states["cuda"]):
            if device < torch.cuda.device_count():
                torch.cuda.set_rng_state(state, device)
        version, python_state, gauss = states["python"]
        random.setstate((version, tuple(python_state), gauss))
        name, key, position, has_gauss, cached = states["numpy"]
        np.random.set_state(
            (name, key.numpy().astype(np.uint32), position, has_gauss, cached)
        )
