"""How the experiments/ scripts end on bad input: one line, like the CLI, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def run_script(main: Callable[..., object], *args) -> None:
    """Calls ``main(*args)``; a bad argument, a missing file or a bad config (``ValueError``,
    ``OSError``, ``KeyError``, e.g. `fedjax_sim.ConfigError`) ends in ``error: <its first
    line>`` on stderr and exit code 2. ``FEDJAX_SIM_DEBUG=1`` shows the traceback instead."""
    try:
        main(*args)
    except (ValueError, OSError, KeyError) as error:
        if os.environ.get("FEDJAX_SIM_DEBUG"):
            raise
        if isinstance(error, KeyError):
            message = f"unknown name {error.args[0]!r}" if error.args else "unknown name"
        else:
            message = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if isinstance(error, OSError) and error.filename and error.strerror:
                message = f"{error.filename}: {error.strerror}"
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
