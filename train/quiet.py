"""Keep TensorFlow's native log lines off the terminal, unless the user asked for them.

TensorFlow's C++ side writes half a dozen lines to file descriptor 2 on every start
(oneDNN notices, "Could not find cuda drivers", a cuInit error on a CPU machine), some
of them before ``TF_CPP_MIN_LOG_LEVEL`` is read at all, so no environment variable
silences them all. Filtering descriptor 2 itself drops exactly those lines and passes
everything else (our own messages, Python warnings, tracebacks) through unchanged.
A user who sets TensorFlow's own logging variables gets its lines as TensorFlow writes them.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

USER_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CPP_VMODULE")
# absl's prefix: severity, MMDD, time, thread id, file:line]   e.g. "E0000 00:00:1795851670.857295    3952 x.cc:52] "
NATIVE_LINE = re.compile(rb"^[IWEF]\d{4} [\d:. ]+\s+\d+ [\w.\-/]+:\d+\] ")
ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

_installed = False


def is_native_log(line: bytes) -> bool:
    return bool(NATIVE_LINE.match(line)) or line.startswith(ABSL_NOTICE)


def quiet_native_logs() -> None:
    """Filter file descriptor 2 for the rest of the process (once; a no-op if the user set
    TensorFlow's logging variables)."""
    global _installed
    if _installed or any(name in os.environ for name in USER_VARIABLES):
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    _installed = True

    def pump() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as source:
            pending = b""
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not is_native_log(line))
                if kept:
                    os.write(original, kept)
            if pending and not is_native_log(pending):
                os.write(original, pending)

    thread = threading.Thread(target=pump, name="adder-stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        """Put descriptor 2 back so the pump sees end of input, and let it drain."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)
        thread.join(timeout=5)

    atexit.register(restore)
