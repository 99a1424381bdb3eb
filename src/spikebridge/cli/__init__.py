"""Command-line interface: ``spikebridge <command> --help`` explains every option.

One module per command (:mod:`.extract`, :mod:`.train` with ``demo``, :mod:`.evaluate`,
:mod:`.tune`, :mod:`.export`, :mod:`.energy`), the options they share (:mod:`.inputs`,
:mod:`.train_options`, :mod:`.run_dir`, :mod:`.common`) and the parser with :func:`main`
(:mod:`.entry_point`). Parsing and checking the arguments imports no torch.
"""

from .entry_point import build_parser, main

__all__ = ["build_parser", "main"]
