"""Named points where a test can ``kill -9`` this process, to prove a run survives a kill at that exact moment.

Set ``TRAINLAB_FAILPOINT`` to one of ``FAILPOINTS`` (``NAME@N``: the N-th time the process
reaches it, e.g. in the third trial of a sweep); when the process reaches that point it sends
itself SIGKILL (no handler runs, nothing is flushed: the real thing); with
``TRAINLAB_FAILPOINT_SCOPE=group``, its whole process group (a sweep's leader and workers). With
``TRAINLAB_FAILPOINT_ACTION=stop`` it sends itself SIGSTOP instead: paused at that exact moment, for a test
to signal it there (Ctrl-C in the first epoch, never a moment later). In a distributed run,
``TRAINLAB_FAILPOINT_RANK=R`` stops rank R alone. Unset, a check costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAILPOINTS = {
    "mid-epoch": "after the first step of the second epoch (of the first, in a one-epoch run)",
    "evaluate": "after the test evaluation is computed, before it is recorded",
    "tracker-finish": "after MLflow and W&B confirmed the end, before the run folder says finished",
    "after-folder": "after the run folder says finished, before the process exits",
    "trial-asked": "a sweep's trial asked of the study and claimed, before its first run starts",
    "trial-told": "a sweep's trial told to the study (its runs recorded), before the next is asked",
}


_times: dict[str, int] = {}


def reached(name: str) -> None:
    wanted = os.environ.get("TRAINLAB_FAILPOINT")
    if not wanted or wanted.partition("@")[0] != name:
        return
    if os.environ.get("TRAINLAB_FAILPOINT_RANK", os.environ.get("RANK", "0")) != os.environ.get("RANK", "0"):
        return  # another rank of a distributed run is the one to stop
    _times[name] = _times.get(name, 0) + 1
    if _times[name] >= int(wanted.partition("@")[2] or 1):
        if os.environ.get("TRAINLAB_FAILPOINT_ACTION") == "stop":
            if _times[name] == int(wanted.partition("@")[2] or 1):  # once: a continued process goes on
                os.kill(os.getpid(), signal.SIGSTOP)
            return
        if os.environ.get("TRAINLAB_FAILPOINT_SCOPE") == "group":  # the whole process group, as `kill -9 -- -PGID`
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
