"""The command line's rich consoles. When output is not a terminal (a cron log, a pipe) rich
would cut tables to 80 columns; there the width is 200 unless $COLUMNS says otherwise."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, width=width)
