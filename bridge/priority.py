"""Real-time scheduling for the daemon's threads: above ordinary processes, never above the MIDI system's threads.

Python threads share one lock (the GIL). If the scheduler thread alone ran at real-time priority, a busy
machine could preempt the ordinary thread that holds the GIL and the scheduler would wait for it anyway
(priority inversion: measured 40 ms late sends under a MIDI flood). So every thread that takes the GIL while
music plays runs at real-time priority: the scheduler highest, the others just below it.

But never at or above JACK's own client threads: they move the MIDI (the daemon's own ports included), and
a spinning scheduler above them makes their cycles late (measured with jackd --no-realtime, whose client
threads are ordinary ones, and the daemon at SCHED_FIFO: 20–110 "client was not finished" xruns per 15 s, and
in 3 runs of 12 the input went deaf; with the daemon at ordinary priority: 9). How the plan is decided
(decide(), from what the JACK server says through libjack):
- JACK server real-time, client threads at SCHED_FIFO P (jack_client_real_time_priority; jackd2 runs them at
  its -P minus 5, so 5 by default): the scheduler at min(4, P - 1), the others at min(3, P - 2), at least 1;
  ordinary scheduling when P - 1 < 1;
- JACK server not real-time, or its state unreadable: ordinary scheduling (a real-time thread of ours would
  preempt JACK's ordinary ones);
- no JACK (ALSA, CoreMIDI, WinMM, OSC only: the kernel or OS moves the MIDI): 4 and 3, below jackd2's default
  client threads in case a JACK server runs beside them for audio.
Low priorities lose nothing: one level above ordinary processes is all the daemon needs, and it stays below
threaded interrupt handlers (50) and audio servers.

The plan can change while threads run (the JACK server is read once the ports are open, and again when a
server comes back): each thread that asked for real-time registers its role, and adopt() re-applies the new
plan to every such thread that is still alive, and to the threads that inherited real-time from them.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"  # roles: the output scheduler …
IO_AND_WORK = "io-and-work"  # … and every other thread that takes the GIL while music plays
CEILING = {SCHEDULER: 4, IO_AND_WORK: 3}  # the highest SCHED_FIFO priority of each role


@dataclass(frozen=True)
class JackState:
    """What a JACK server says about its real-time scheduling."""

    realtime: bool  # jack_is_realtime: the server and its clients' process threads run SCHED_FIFO
    client_priority: int  # jack_client_real_time_priority: those threads' priority (-1 when not real-time)


@dataclass(frozen=True)
class Plan:
    """SCHED_FIFO priority per role (0: ordinary scheduling) and the reason, for the log."""

    scheduler: int
    io_and_work: int
    why: str

    def of(self, role: str) -> int:
        return self.scheduler if role == SCHEDULER else self.io_and_work

    @property
    def realtime(self) -> bool:
        return self.scheduler > 0


def decide(jack: JackState | None, on_jack: bool) -> Plan:
    """The plan for a daemon on JACK (`on_jack`; `jack` None when the server could not be asked) or not."""
    if not on_jack:
        return Plan(CEILING[SCHEDULER], CEILING[IO_AND_WORK], "not on JACK: real-time priority "
                    f"{CEILING[SCHEDULER]}/{CEILING[IO_AND_WORK]}, below jackd's default client threads")
    if jack is None:
        return Plan(0, 0, "the JACK server's scheduling cannot be read: ordinary priority (never above JACK)")
    if not jack.realtime or jack.client_priority < 2:
        return Plan(0, 0, "the JACK server is not real-time (or its clients run at priority "
                    f"{max(jack.client_priority, 0)}): ordinary priority, so JACK's threads are never preempted")
    scheduler = min(CEILING[SCHEDULER], jack.client_priority - 1)
    io_and_work = max(1, min(CEILING[IO_AND_WORK], jack.client_priority - 2))
    return Plan(scheduler, io_and_work, f"JACK's client threads run at real-time priority {jack.client_priority}: "
                f"the daemon's at {scheduler}/{io_and_work}, below them")


def ask_jack(lib, client) -> JackState | None:
    """The JACK server's scheduling, asked through a libjack client (ctypes CDLL, jack_client_t*)."""
    if lib is None or not client:
        return None
    try:
        for name in ("jack_is_realtime", "jack_client_real_time_priority"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_int
        return JackState(bool(lib.jack_is_realtime(client)), int(lib.jack_client_real_time_priority(client)))
    except (AttributeError, OSError) as error:  # a libjack without these (very old): unknown
        log.debug("cannot ask JACK for its scheduling: %s", error)
        return None


def plan_for(api: str | None, watch=None) -> Plan:
    """The plan for a daemon serving MIDI on `api` ("jack", "alsa", …; None: OSC only), asking the JACK server
    through `watch` (bridge/jack_watch.JackWatch: its libjack and client) when on JACK."""
    on_jack = api == "jack"
    state = ask_jack(watch.lib, watch.client) if on_jack and watch is not None else None
    return decide(state, on_jack)


_lock = threading.Lock()
_plan = decide(None, on_jack=False)
_threads: dict[threading.Thread, str] = {}  # thread → role, for the threads that asked for real-time


def current() -> Plan:
    with _lock:
        return _plan


def adopt(plan: Plan) -> None:
    """Make `plan` the plan, and move every registered live thread to it."""
    global _plan
    with _lock:
        changed, _plan = plan != _plan, plan
        live = {thread: role for thread, role in _threads.items() if thread.is_alive()}
        _threads.clear()
        _threads.update(live)
    if changed:
        log.info("thread priorities: %s", plan.why)
    for thread in threading.enumerate():
        role = live.get(thread)
        if role is None and _is_realtime(thread.native_id):  # started by a real-time thread: inherited it
            role = IO_AND_WORK
        if role is not None:
            _apply(thread.native_id, plan.of(role), thread.name)


def _is_realtime(tid: int | None) -> bool:
    try:
        return tid is not None and os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR)
    except (AttributeError, OSError):
        return False


def _apply(tid: int | None, level: int, name: str) -> bool:
    """SCHED_FIFO `level` (0: ordinary) for thread `tid`; False (and the thread unchanged) where not permitted."""
    if tid is None:
        return False
    try:
        if level > 0:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(level))
        else:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError) as error:  # not Linux, or no rtprio limit (see `ulimit -r`, audio group)
        log.debug("%s thread at normal priority: %s", name, error)
        return False
    return level > 0


def become_realtime(role: str, name: str) -> bool:
    """Move the calling thread to its role's priority in the plan (and keep it there when the plan changes);
    False when that is ordinary scheduling or not permitted."""
    thread = threading.current_thread()
    with _lock:
        _threads[thread] = role
        level = _plan.of(role)
    return _apply(threading.get_native_id(), level, name)


def become_normal() -> None:
    """Back to ordinary scheduling for slow, unhurried work (loading a model) started from a real-time thread."""
    with _lock:
        _threads.pop(threading.current_thread(), None)
    _apply(threading.get_native_id(), 0, threading.current_thread().name)


def realtime_threads(pid: int | None = None) -> dict[int, int]:
    """{thread id: SCHED_FIFO/RR priority} of a process's real-time threads, read from /proc (Linux)."""
    result = {}
    root = f"/proc/{pid or os.getpid()}/task"
    for tid in os.listdir(root):
        try:
            with open(f"{root}/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        rt_priority, policy = int(fields[37]), int(fields[38])  # stat fields 40 and 41 (1-based, after the name)
        if policy in (1, 2):  # SCHED_FIFO, SCHED_RR
            result[int(tid)] = rt_priority
    return result
