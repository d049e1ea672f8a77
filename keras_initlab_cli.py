"""The ``initlab`` command's entry point; outside the package, so that it runs before TensorFlow loads.

``import keras_initlab`` imports TensorFlow, whose C++ libraries print to the process's
stderr as they load and on the first XLA compile: oneDNN and CPU-feature notices, CUDA
stubs on a machine without a GPU, absl's "before InitializeLog" warning. Unless the user
set ``TF_CPP_MIN_LOG_LEVEL`` (then they asked for those lines, and see them), the command
sets it to 3 and, while the package is imported, drops from stderr the C++ log lines that
come before TensorFlow's own logging is set up (the CUDA stubs'); anything else printed
then (a Python warning, a traceback) is passed on. ``python -m keras_initlab`` imports the
package first and keeps every line.
"""

import os
import re
import sys
import tempfile

_CPP_LOG_LINE = re.compile(
    r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) is called"
)


def main() -> int:
    """Runs `keras_initlab.cli.main` on ``sys.argv``; returns its exit status."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        from keras_initlab.cli import main as command
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        command = _import_quietly()
    return command()


def _import_quietly():
    """``keras_initlab.cli.main``, imported with file descriptor 2 sent to a file, then replayed without C++ log lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            from keras_initlab.cli import main as command
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not _CPP_LOG_LINE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
    return command
