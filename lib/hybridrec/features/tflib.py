"""TensorFlow and Keras, imported quietly.

Importing TensorFlow writes C++ notices straight to file descriptor 2 before absl's logging is
set up ("oneDNN custom operations are on", "All log messages before absl::InitializeLog()"), so
``TF_CPP_MIN_LOG_LEVEL`` cannot silence them. :func:`quiet_import` imports both once per process
with descriptor 2 pointed at /dev/null, unless ``TF_CPP_MIN_LOG_LEVEL`` is unset or 0 (the jobs set
it to 3 unless ``spark.log_level`` is DEBUG; see hybridrec.runtime.session). Python exceptions are
unaffected: an import that fails still raises, with its message.
"""
from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()


@contextmanager
def _descriptor_2_silenced(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_import() -> None:
    """Import tensorflow and keras (once per process; a no-op once they are imported)."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    with _lock:
        quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")
        with _descriptor_2_silenced(quiet):
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
