"""Runs inside the Google Cloud SDK's own Python: many gcloud commands through one loaded CLI.

Starting gcloud costs about a second of CPU per command; loading its CLI once and executing each
command in turn makes the same parser judge hundreds of commands in seconds. Reads a JSON list of
argv lists on stdin; for each writes a marker line `@@@ <index>` to stderr before gcloud's own
messages, and one JSON line {"index", "code"} to stdout (0 ran, 1 failed after parsing, 2 refused by
the parser).
"""

import contextlib
import io
import json
import os
import sys

SDK_LIB = os.path.join(os.environ["CLOUDSDK_ROOT_DIR"], "lib")
sys.path[:0] = [SDK_LIB, os.path.join(SDK_LIB, "third_party")]

from googlecloudsdk import gcloud_main  # noqa: E402


def main() -> None:
    """Execute every command given on stdin, reporting each one's exit code."""
    cli = gcloud_main.CreateCLI([])
    for index, argv in enumerate(json.load(sys.stdin)):
        sys.stderr.write(f"@@@ {index}\n")
        sys.stderr.flush()
        code = 0
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.Execute(argv)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except Exception as error:  # a failure after parsing: report, carry on
                sys.stderr.write(f"{type(error).__name__}: {error}\n")
                code = 1
        sys.stderr.flush()
        print(json.dumps({"index": index, "code": code}), flush=True)


if __name__ == "__main__":
    main()
