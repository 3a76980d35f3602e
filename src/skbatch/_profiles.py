"""What earlier calls learned about a model, so later calls skip measuring.

The first call of a model's method measures it (see :mod:`skbatch._measure`)
and chooses an execution; the result is kept here as a :class:`Profile`, keyed
by the model object, the method, the number of workers and the kind of input.
A later call with the same key starts its workers at once, with chunks sized
from the kept costs: no calibration, no waiting. What the later calls observe
keeps the profile honest: an execution that ran slower than the measured
serial speed is dropped for the calling thread alone, and every profile is
measured afresh after :data:`REUSES` calls (the machine's load, or the model,
may have changed). A profile only ever changes speed, never results: outputs
are checked on every call, whatever the profile says.

Profiles live as long as their model: the key holds a weak reference, so a
model that is garbage-collected takes its profiles with it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from skbatch._measure import Costs

#: A profile serves this many calls, then the next call measures afresh.
REUSES = 20
#: A parallel execution observed slower than this many times the serial speed
#: is given up for the calling thread alone.
MIN_OBSERVED_SPEEDUP = 0.97
#: ... in this many calls in a row.
SLOW_CALLS = 2


@dataclass
class Profile:
    """The costs and execution an earlier call found for a model's method."""

    path: str  # "threads", "processes" or "in-process"
    costs: Costs
    gil_share: float | None
    reasons: list = field(default_factory=list)
    uses: int = 0
    slow_calls: int = 0


_lock = threading.Lock()
#: id(model) -> (weak reference to the model, its state stamp, {subkey: Profile})
_profiles: dict[int, tuple[weakref.ref, tuple, dict]] = {}


def _owner(model):
    # A FrozenEstimator is usually made afresh around the same fitted model
    # for each call; the model inside is what the costs belong to.
    from sklearn.frozen import FrozenEstimator

    while isinstance(model, FrozenEstimator):
        model = model.estimator
    return model


def state_stamp(model) -> tuple:
    """The identities of the model's attribute values, and of its pipeline
    steps': refitting in place or ``set_params`` replaces some of them, so the
    costs measured before no longer apply."""
    owners = [model]
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        owners += [step[-1] for step in steps if isinstance(step, tuple)]
    return tuple(
        tuple(
            (name, id(value)) for name, value in getattr(owner, "__dict__", {}).items()
        )
        for owner in owners
    )


def input_signature(X) -> tuple:
    """What about an input changes a model's costs per row, besides its rows:
    the container, the dtype and the shape of one row."""
    dtype = getattr(X, "dtype", None)
    shape = getattr(X, "shape", None)
    return (
        type(X).__module__,
        type(X).__qualname__,
        None if dtype is None else str(dtype),
        None if shape is None else tuple(shape[1:]),
    )


def _forget(owner_id: int, ref) -> None:
    with _lock:
        entry = _profiles.get(owner_id)
        if entry is not None and entry[0] is ref:
            del _profiles[owner_id]


def recall(model, method: str, X, n_workers: int) -> Profile | None:
    """The profile an earlier call left for this model, method and input, or
    None (none kept, or it has served :data:`REUSES` calls)."""
    owner = _owner(model)
    subkey = (method, n_workers, input_signature(X))
    with _lock:
        entry = _profiles.get(id(owner))
        if entry is None or entry[0]() is not owner:
            return None
        if entry[1] != state_stamp(owner):  # refitted or changed in place
            del _profiles[id(owner)]
            return None
        profile = entry[2].get(subkey)
        if profile is None:
            return None
        if profile.uses >= REUSES:
            del entry[2][subkey]
            return None
        profile.uses += 1
        return profile


def remember(model, method: str, X, n_workers: int, profile: Profile) -> None:
    """Keep ``profile`` for later calls (a model that cannot be weakly
    referenced is not remembered: every call measures it)."""
    owner = _owner(model)
    subkey = (method, n_workers, input_signature(X))
    owner_id = id(owner)
    stamp = state_stamp(owner)
    with _lock:
        entry = _profiles.get(owner_id)
        if entry is None or entry[0]() is not owner or entry[1] != stamp:
            try:
                ref = weakref.ref(owner, lambda r, i=owner_id: _forget(i, r))
            except TypeError:
                return
            entry = (ref, stamp, {})
            _profiles[owner_id] = entry
        entry[2][subkey] = profile


def observe(profile: Profile, path: str, speedup: float | None) -> str | None:
    """Update ``profile`` with the speed-up a call observed on ``path`` (over
    the measured serial speed); returns why the profile's path changed, if it
    did. One slow call can be the machine's noise (another program took a
    core for a moment): the path is given up after :data:`SLOW_CALLS` slow
    calls in a row."""
    if speedup is None or path != profile.path or path == "in-process":
        return None
    with _lock:
        if speedup >= MIN_OBSERVED_SPEEDUP:
            profile.slow_calls = 0
            return None
        profile.slow_calls += 1
        if profile.slow_calls < SLOW_CALLS:
            return None
        profile.path = "in-process"
        reason = (
            f"{path} ran at {speedup:.2f}x the serial speed in {SLOW_CALLS} "
            "earlier calls in a row: calling thread alone"
        )
        profile.reasons = [reason]
    return reason


def forget_measurements() -> None:
    """Forget what earlier calls measured about every model.

    skbatch keeps, for each fitted model object, the costs and execution its
    first call measured, and reuses them for the next calls of the same
    method, number of workers and kind of input (see the user guide). Call
    this after something changed that the measurements cannot see, such as
    the machine's load, so that the next call of each model measures afresh
    (a model refitted or changed with ``set_params`` is measured afresh
    anyway). Results never depend on the measurements;
    only the speed does.

    Examples
    --------
    >>> import skbatch
    >>> skbatch.forget_measurements()
    """
    with _lock:
        _profiles.clear()
