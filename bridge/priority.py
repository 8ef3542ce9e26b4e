"""Real-time scheduling for the daemon's threads, where the system allows it (as audio software does).

Python threads share one lock (the GIL). If the scheduler thread alone ran at real-time priority, a busy
machine could preempt the ordinary thread that holds the GIL and the scheduler would wait for it anyway
(priority inversion: measured 40 ms late sends under a MIDI flood). So every thread that takes the GIL while
music plays runs at real-time priority: the scheduler highest, the others just below it.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

SCHEDULER = 10  # SCHED_FIFO priorities (1..99; JACK's own threads usually run at 70+)
IO_AND_WORK = 5


def become_realtime(priority: int, name: str) -> bool:
    """Move the calling thread to SCHED_FIFO `priority`; False (and the thread unchanged) where not permitted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (AttributeError, OSError) as error:  # not Linux, or no rtprio limit (see `ulimit -r`, audio group)
        log.debug("%s thread at normal priority: %s", name, error)
        return False
    return True


def become_normal() -> None:
    """Back to ordinary scheduling for slow, unhurried work (loading a model) started from a real-time thread."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
