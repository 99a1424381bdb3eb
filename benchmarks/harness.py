"""Helpers shared by the benchmark scripts of ``benchmarks/``.

Where results go: a full run writes ``benchmarks/results/<name>`` (the files the README tables
are rendered from and that are committed); a ``--quick`` smoke run writes
``benchmarks/results/quick/<name>`` (ignored by git), so that a quick run never overwrites, nor
merges into, a committed result. An explicit ``--out`` always wins::

    out = result_path("speed.json", args.quick, args.out)

Scripts import this module as ``harness`` (``benchmarks/`` is on ``sys.path`` when a script of
it runs).
"""

from __future__ import annotations

from pathlib import Path

#: the repository root
ROOT = Path(__file__).resolve().parent.parent
#: the committed results, which the README tables are rendered from
RESULTS = ROOT / "benchmarks" / "results"
#: where ``--quick`` runs write (ignored by git)
QUICK_RESULTS = RESULTS / "quick"


def result_path(name: str, quick: bool, out: Path | None = None, *, create: bool = True) -> Path:
    """The file a benchmark writes (and, for scripts that merge, reads back).

    Parameters
    ----------
    name : str
        File name inside the results folder, e.g. ``"speed.json"``.
    quick : bool
        Whether the run is a ``--quick`` smoke run: it then goes to :data:`QUICK_RESULTS`.
    out : Path or None, optional
        An explicit ``--out``; returned as is when given (quick or not).
    create : bool, optional
        Create the file's parent folder (default ``True``).

    Returns
    -------
    Path
        ``out`` if given, else ``QUICK_RESULTS / name`` when ``quick``, else ``RESULTS / name``.
    """
    path = Path(out) if out is not None else (QUICK_RESULTS if quick else RESULTS) / name
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path
