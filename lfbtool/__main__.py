"""``python -m lfbtool`` and the ``lfbtool`` console script.

The SIGINT / SIGTERM handlers go in before the CLI is imported (Typer, rich and the command modules
take a moment): a Ctrl-C during start-up is the same one line as one during the run, never a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    from lfbtool.runtime.stopping import Stopped, stop_on_signals

    with stop_on_signals():
        try:
            from lfbtool.cli import main as run_cli
        except (Stopped, KeyboardInterrupt) as stop:
            import signal

            from lfbtool.runtime.stopping import stopped_message

            signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
            sys.stderr.write(f"error: {stopped_message(signum, sys.argv[1:])}\n")
            sys.exit(128 + signum)
        run_cli()


if __name__ == "__main__":
    main()
