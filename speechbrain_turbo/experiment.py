"""Guards and records for experiment folders.

SpeechBrain resumes from whatever checkpoints sit in an experiment's output
folder. Run a baseline (or another test session) into the folder of a
finished Turbo run and it silently reports the Turbo model's numbers. This
module records what defines a run and refuses to reuse its folder for a
different one, and records what a run needs to be reproduced: the packages
of the interpreter that ran it, the code's git revision and the checksums of
its data manifests (SpeechBrain's ``hyperparams.yaml`` already holds the
resolved hyperparameters).

Authors
 * speechbrain-turbo contributors
"""

import difflib
import fcntl
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML

from speechbrain_turbo.errors import InputError

IDENTITY_FILE = "run_identity.json"
RECORD_FILE = "run_record.json"
LOCK_FILE = "run.lock"
# This package's code, whose commit every run records.
PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__))
# Open lock files, held for the life of the process (closing one frees it).
_held_locks = {}


def lock_output_folder(output_folder):
    """Makes this process the only one training in ``output_folder``.

    Two runs of one command in one folder would interleave their logs and
    delete each other's checkpoints. The lock (``run.lock``, an ``flock``
    the system drops when the process ends, however it ends) is held until
    the process exits; a second process stops with a message naming the
    first.

    Arguments
    ---------
    output_folder : str
        The run's output folder (created if missing).

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> lock_output_folder(folder)
    >>> lock_output_folder(folder)  # this process holds it already
    """
    folder = os.path.abspath(output_folder)
    if folder in _held_locks:
        return
    os.makedirs(folder, exist_ok=True)
    handle = open(os.path.join(folder, LOCK_FILE), "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SystemExit(
            f"{folder} is in use by {holder}: wait for that run to end, or "
            "give this one its own --output_folder (or --experiment_name)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(
        f"process {os.getpid()} on {socket.gethostname()}, started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
    )
    handle.flush()
    _held_locks[folder] = handle


def check_override_keys(hparams_file, overrides):
    r"""Stops in one line when a command-line override names no key of the
    hparams file (a typo would otherwise end in HyperPyYAML's traceback
    listing every key), suggesting the closest keys, or when a key the file
    leaves to the command line (``!PLACEHOLDER``) is not given.

    Arguments
    ---------
    hparams_file : str
        Path of the hparams YAML file.
    overrides : str
        The command-line overrides as YAML (``sb.parse_arguments``' third
        result).

    Returns
    -------
    None

    Example
    -------
    >>> import tempfile
    >>> yaml = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> _ = open(yaml, "w").write("turbo_weight: 1\ndata: !PLACEHOLDER\n")
    >>> check_override_keys(yaml, "turbo_weight: 0\ndata: d")
    >>> check_override_keys(yaml, "turbo_wieght: 0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_turbo.errors.InputError: --turbo_wieght is not a key ...
    >>> check_override_keys(yaml, "")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_turbo.errors.InputError: ...needs --data=... on the command...
    """
    # The round-trip loader reads HyperPyYAML's tags without running them.
    with open(hparams_file, encoding="utf-8") as f:
        values = YAML(typ="rt").load(f) or {}
    given = YAML(typ="rt").load(overrides or "") or {}
    unknown = [key for key in given if key not in values]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(values), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(
            f"--{key} is not a key of {hparams_file}{hint} (the command "
            "line sets the file's own keys only)"
        )
    missing = [
        key
        for key, value in values.items()
        if getattr(getattr(value, "tag", None), "value", None) == "!PLACEHOLDER"
        and key not in given
    ]
    if missing:
        needed = " ".join(f"--{key}=..." for key in missing)
        raise InputError(
            f"{hparams_file} needs {needed} on the command line (the "
            "recipe's README shows a full command)"
        )


def check_run_identity(output_folder, hparams_file, overrides):
    r"""Fails if ``output_folder`` holds a run made with other hparams.

    The identity of a run is its hparams file's content and its overrides;
    the first call records it in ``<output_folder>/run_identity.json``, later
    calls (a resumed run) must match it.

    Arguments
    ---------
    output_folder : str
        The experiment's output folder.
    hparams_file : str
        Path of the hparams YAML file.
    overrides : str or dict
        The command-line overrides, as given to ``load_hyperpyyaml``.

    Raises
    ------
    ValueError
        Naming the keys that differ and what to do.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> yaml = os.path.join(folder, "h.yaml")
    >>> _ = open(yaml, "w").write("lr: 1\n")
    >>> check_run_identity(folder, yaml, "lr: 2")
    >>> check_run_identity(folder, yaml, "lr: 2")  # the same run resumes
    >>> check_run_identity(folder, yaml, "lr: 3")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_turbo.errors.InputError: ...other settings: lr (was 2, now 3)...
    """
    if isinstance(overrides, str):
        try:
            overrides = load_hyperpyyaml(overrides) if overrides.strip() else {}
        except Exception:  # e.g. a !ref that only resolves in the file
            overrides = {"(overrides)": overrides}
    with open(hparams_file, "rb") as f:
        file_hash = hashlib.sha256(f.read()).hexdigest()
    identity = {
        "hparams_file": os.path.basename(hparams_file),
        "hparams_sha256": file_hash,
        "overrides": {k: overrides[k] for k in sorted(overrides or {})},
    }
    # JSON round trip so that the comparison sees what the file holds.
    identity = json.loads(json.dumps(identity, default=str))
    path = os.path.join(output_folder, IDENTITY_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
        if recorded != identity:
            raise InputError(
                f"{output_folder} holds a run made with other settings: "
                f"{_describe_changes(recorded, identity)}. Resuming there "
                "would reuse that run's checkpoints. Pass a new "
                "--output_folder (or --experiment_name) for this run, or "
                "delete the folder to start it again."
            )
        return
    os.makedirs(output_folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(identity, f, indent=2)


def _describe_changes(recorded, current):
    """Human-readable list of what differs between two identities."""
    changes = []
    if recorded["hparams_file"] != current["hparams_file"]:
        changes.append(
            f"hparams file (was {recorded['hparams_file']}, "
            f"now {current['hparams_file']})"
        )
    elif recorded["hparams_sha256"] != current["hparams_sha256"]:
        changes.append(f"the content of {current['hparams_file']}")
    old, new = recorded["overrides"], current["overrides"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            was = old.get(key, "the file's value")
            now = new.get(key, "the file's value")
            changes.append(f"{key} (was {was}, now {now})")
    return ", ".join(changes)


def sha256_of_file(path):
    """Hex SHA-256 of a file's bytes.

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    str
        The digest.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "f")
    >>> _ = open(path, "w").write("abc")
    >>> sha256_of_file(path)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_revision(folder=PACKAGE_FOLDER):
    """The commit of the checkout holding ``folder`` (this package's code)
    and whether that code differs from it: a tracked file edited, or a file
    in ``folder`` that git does not track (results or measurements written
    elsewhere in the checkout do not count).

    Example
    -------
    >>> import subprocess, tempfile
    >>> repo = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(repo, "package"))
    >>> with open(os.path.join(repo, "package", "code.py"), "w") as f:
    ...     _ = f.write("x = 1")
    >>> git = ["git", "-C", repo, "-c", "user.name=a", "-c", "user.email=a@b"]
    >>> _ = subprocess.run(git + ["init", "-q"], check=True)
    >>> _ = subprocess.run(git + ["add", "."], check=True)
    >>> _ = subprocess.run(git + ["commit", "-qm", "code"], check=True)
    >>> package = os.path.join(repo, "package")
    >>> with open(os.path.join(repo, "results.csv"), "w") as f:
    ...     _ = f.write("UA")
    >>> _git_revision(package)["dirty"]
    False
    >>> with open(os.path.join(package, "new.py"), "w") as f:
    ...     _ = f.write("y = 2")
    >>> _git_revision(package)["dirty"]
    True
    """
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = "".join(
            subprocess.run(
                ["git", "-C", folder, "status", "--porcelain", *which],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for which in (["--untracked-files=no"], ["--", "."])
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _check_manifests_unchanged(output_folder, manifests):
    """Refuses to resume a run that has checkpoints on manifests whose
    content differs from those it recorded when it started.
    """
    path = os.path.join(output_folder, RECORD_FILE)
    checkpoints = glob.glob(os.path.join(output_folder, "save", "CKPT*"))
    if not (checkpoints and os.path.exists(path)):
        return
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f).get("manifests", {})
    for split, manifest in manifests.items():
        before = recorded.get(split, {}).get("sha256")
        if before is not None and before != sha256_of_file(manifest):
            raise InputError(
                f"The {split} manifest {manifest} changed since this run "
                f"started in {output_folder} (its checkpoints were trained "
                "on the old content): delete that folder to start anew on "
                "the new data, or pass a new --output_folder"
            )


def write_run_record(output_folder, manifests):
    """Writes ``run_record.json``: what reproducing this run needs.

    The command line, Python, platform, the version of every package of the
    running interpreter, the version and folder of the SpeechBrain imported,
    torch's threads and devices, the git revision of
    ``speechbrain_turbo`` (when installed from a checkout) and the SHA-256
    of each data manifest. A resumed run overwrites it. (SpeechBrain's own
    ``env.log`` lists the packages of the ``pip`` found on ``PATH``, which
    need not be the running interpreter's, and no manifest checksums.)

    Arguments
    ---------
    output_folder : str
        The experiment folder.
    manifests : dict
        Split name -> manifest path.

    Returns
    -------
    dict
        The record written.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> manifest = os.path.join(folder, "train.json")
    >>> _ = open(manifest, "w").write("{}")
    >>> record = write_run_record(folder, {"train": manifest})
    >>> record["packages"]["torch"] == torch.__version__.split("+")[0]
    True

    A run with checkpoints does not resume on other data:

    >>> os.makedirs(os.path.join(folder, "save", "CKPT+1"))
    >>> _ = open(manifest, "w").write('{"new": {}}')
    >>> write_run_record(folder, {"train": manifest})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_turbo.errors.InputError: The train manifest ...changed...
    """
    _check_manifests_unchanged(output_folder, manifests)
    packages = {
        dist.metadata["Name"]: dist.version
        for dist in importlib.metadata.distributions()
    }
    record = {
        "command": sys.argv,
        "python": sys.version,
        "platform": platform.platform(),
        "packages": dict(sorted(packages.items(), key=lambda i: i[0].lower())),
        # The SpeechBrain that runs, which a checkout on PYTHONPATH makes
        # differ from the installed package listed above.
        "speechbrain": {
            "version": sb.__version__,
            "path": os.path.dirname(os.path.abspath(sb.__file__)),
        },
        "torch": {
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.version.cuda,
            "devices": [
                torch.cuda.get_device_name(i)
                for i in range(torch.cuda.device_count())
            ],
        },
        "speechbrain_turbo_git": _git_revision(),
        "manifests": {
            split: {
                "path": os.path.abspath(path),
                "sha256": sha256_of_file(path),
            }
            for split, path in manifests.items()
        },
    }
    with open(
        os.path.join(output_folder, RECORD_FILE), "w", encoding="utf-8"
    ) as f:
        json.dump(record, f, indent=2)
    return record
