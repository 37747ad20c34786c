"""`python3 -m ble_exporter` and the `ble-exporter` command.

The signals are taken over before anything else is imported, so that a stop or a reload at any moment
of a slow start is handled (ble_exporter.signals); then the command line is parsed.
"""

import sys

from ble_exporter import signals


def main() -> int:
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), "")
    signals.take_over(hup_reloads=command == "run")
    try:
        from ble_exporter.main import main as run_command

        return run_command()
    except signals.Stopped:  # before the command could handle it: nothing had started
        return 0


if __name__ == "__main__":
    sys.exit(main())
