"""The run folder of ``spikebridge train``: never replaced silently, locked while a run writes it,
and a checkpoint resumed only with the settings it was trained with."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import SpikebridgeError
from .common import new_numbered_dir


def _plain(obj):
    """JSON round trip: tuples become lists, as in a checkpoint's metadata."""
    import json

    return json.loads(json.dumps(obj))


def check_resume(learner, run_dir: Path) -> None:
    """Refuse --resume from a checkpoint of another rule or other settings (before extraction).
    Settings left to be chosen from the data (CoLaNET's ``microcolumns=None``) match any value."""
    from ..io import load_tensors

    ckpt = run_dir / "checkpoint.safetensors"
    if not ckpt.is_file():
        warnings.warn(f"--resume: no checkpoint in {run_dir}; training from the start", stacklevel=2)
        return
    _, have = load_tensors(ckpt)
    want = {k: v for k, v in _plain(learner.metadata()).items() if k != "normaliser"}  # settings, not fitted state
    requested = getattr(learner, "requested", None)  # the config as asked for, before prepare() resolves it
    if requested is not None:
        from dataclasses import asdict

        adaptive = [k for k, v in asdict(requested).items() if v is None]
        want["config"] = {k: v for k, v in want["config"].items() if k not in adaptive}
    if have.get("rule") != want.get("rule"):
        raise SpikebridgeError(f"--resume: {ckpt} is a {have.get('rule')!r} checkpoint, not {want.get('rule')!r}; "
                               f"pass --rule {have.get('rule')} or another --run-dir")
    diffs = []
    for key, value in want.items():
        if isinstance(value, dict):
            diffs += [f"{k} {have.get(key, {}).get(k)!r} (now {v!r})" for k, v in value.items()
                      if have.get(key, {}).get(k) != v]
        elif have.get(key) != value:
            diffs.append(f"{key} {have.get(key)!r} (now {value!r})")
    if diffs:
        raise SpikebridgeError(f"--resume: {ckpt} was trained with other settings: {', '.join(diffs)}; "
                               "resume with the checkpoint's settings or use another --run-dir")


#: files of a training run that --overwrite removes before the new run starts
RUN_FILES = ("checkpoint.safetensors", "model.safetensors", "run.json", "report.md")
RUN_LOCK = ".train.lock"


def check_run_dir(args) -> None:
    """--run-dir that already holds a run is refused unless --resume or --overwrite. The lock
    file alone is no run: a run in progress is refused by its lock (`lock_run_dir()`), and
    one left by a killed run is free."""
    if args.resume and args.overwrite:
        raise SpikebridgeError("--resume continues the run in --run-dir and --overwrite replaces it; pass one")
    if args.resume and args.run_dir is None:
        raise SpikebridgeError("--resume needs --run-dir (by default every run gets a new folder)")
    out = args.run_dir
    if out is None or args.resume or args.overwrite or not out.exists():
        return
    if not out.is_dir():
        raise SpikebridgeError(f"--run-dir {out} is a file, not a folder")
    if any(p.name != RUN_LOCK for p in out.iterdir()):
        raise SpikebridgeError(f"--run-dir {out} already holds files (a run is never replaced silently); "
                               "pass --resume to continue it, --overwrite to replace it, or choose another folder")


def lock_run_dir(args, default: Path):
    """The run folder, created and locked for this process: ``--run-dir`` (checked again under
    the lock) or a new numbered ``default-<n>``. Returns ``(folder, lock)``."""
    from ..features import ShardLock

    run_dir = args.run_dir or new_numbered_dir(default)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpikebridgeError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from exc
    lock = ShardLock(run_dir / RUN_LOCK)
    try:
        locked = lock.acquire(block=False)
    except OSError as exc:
        raise SpikebridgeError(f"cannot write in the run folder {run_dir}: {exc.strerror or exc}") from exc
    if not locked:
        raise SpikebridgeError(f"{run_dir} is in use by another 'spikebridge train' (it holds {run_dir / RUN_LOCK}); "
                               "wait for it to finish or choose another --run-dir")
    try:
        check_run_dir(args)  # again under the lock: a run may have finished in the folder meanwhile
        if args.overwrite:
            for name in RUN_FILES:
                (run_dir / name).unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    return run_dir, lock
