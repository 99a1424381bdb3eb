"""Command-line interface: ``spikebridge <command> --help`` explains every option.

One module per command (`extract`, `train` with ``demo``, `evaluate`,
`tune`, `export`, `energy`), the options they share (`inputs`,
`train_options`, `run_dir`, `common`) and the parser with `main()`
(`entry_point`). Parsing and checking the arguments imports no torch.
"""

from .entry_point import build_parser, main

__all__ = ["build_parser", "main"]
