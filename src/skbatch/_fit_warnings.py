"""The warnings a fit raised, recorded on a cache miss and raised again on
every hit, so that a cached fit says what a real one says.

Recording leaves the filters alone, so the fit runs exactly as it would
uncached; it records the warnings the filters let through to be shown.
Replay goes through the caller's filters as they are then.
"""

from __future__ import annotations

import contextlib
import threading
import warnings

from skbatch._errors import CacheWarning

#: Held while a fit's warnings are recorded. ``catch_warnings`` swaps
#: process-wide state, so fits in other threads meanwhile run without
#: recording (their hits replay nothing); a cached fit nested in another (a
#: cached step in a cached pipeline) records in the same thread.
_RECORDING = threading.RLock()
_WARNING_REGISTRIES: dict[str, dict] = {}


def replay_warnings(recorded) -> None:
    """Emit recorded warnings again, through the caller's filters."""
    for category, message, filename, lineno in recorded or ():
        warnings.warn_explicit(
            message,
            category,
            filename,
            lineno,
            registry=_WARNING_REGISTRIES.setdefault(filename, {}),
        )


def call_recording_warnings(call, *args):
    """``call(*args)``, and the warnings it raised that a cache hit should
    raise again (None if they could not be recorded). All of them are
    emitted again before this returns or raises."""
    if not _RECORDING.acquire(blocking=False):
        return call(*args), None
    caught: list = []
    recorder = threading.get_ident()
    try:
        with warnings.catch_warnings():
            shown_elsewhere = warnings.showwarning

            def record(message, category, filename, lineno, file=None, line=None):
                if threading.get_ident() == recorder:
                    caught.append((category, str(message), filename, lineno))
                else:  # another thread's warning is its own
                    shown_elsewhere(message, category, filename, lineno, file, line)

            warnings.showwarning = record
            # The filters stay as they are: a fit that checks for warnings
            # itself (catch_warnings, "error") must take the same path as
            # without the cache. What the filters let through is recorded.
            output = call(*args)
    except BaseException:
        with contextlib.suppress(Exception):  # the fit's own error comes first
            replay_warnings(caught)
        raise
    finally:
        _RECORDING.release()
    replay_warnings(caught)
    # skbatch's own warnings (a damaged entry of a nested step) were about
    # that fit, not this one: not raised again on hits.
    return output, [w for w in caught if not issubclass(w[0], CacheWarning)]
