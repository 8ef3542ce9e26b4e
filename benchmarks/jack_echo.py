"""A pure echo client: the same-run baseline of benchmarks/bench_clock.py, what any JACK client written in Python
answers a clock with on the same server at the same time as the daemon.

It hears a MIDI clock on "<name>:in" and answers every 16th (each sixth tick of the song position, read as
jack_rig.SongPosition reads Start, Continue, Stop and Song Position Pointer) with a short note on "<name>:out",
on ECHO_CHANNEL, as soon as it can, by the path a Python MIDI client takes (the daemon's, through rtmidi, too):
JACK's process callback hands the tick to an ordinary thread, the thread queues the note, and the next process
callback writes what is queued at the start of its cycle. Its offset from the tick is then what this server and
this machine cost any such client in this run — the wait for the next cycle (a tick anywhere in a 1.33 ms cycle
is answered at the next cycle's start), a thread woken late, a cycle missed while the non-real-time server or the
VM stalled — and nothing of the daemon's own (its clock estimate, its scheduler). Answering inside the callback,
at the tick's own frame, would always be 0 frames off: a baseline that shows nothing.

It runs in a process of its own, so that its callback waits for no other thread's GIL (a --sync server waits for
every client's callback):

    python -m musicbridge.benchmarks.jack_echo NAME
        prints "ready" once its ports are up; ends when its stdin closes, printing {"ticks": …, "answered": …}

Written on JACK-Client (the `jack` module): a process callback of our own is what places the answer in a cycle.
"""

from __future__ import annotations

import collections
import json
import queue
import sys
import threading

from musicbridge.benchmarks.jack_rig import TICKS_PER_16TH, SongPosition

ECHO_CHANNEL = 15  # 0-based: MIDI channel 16, apart from the daemon's answers on channel 1
ECHO_PITCH, ECHO_VELOCITY = 60, 100


class Echo:
    """The JACK client: `counts` says how many clock ticks it heard and how many 16ths it answered."""

    def __init__(self, name: str):
        import jack  # JACK-Client: imported here, so that the benchmark reads ECHO_CHANNEL without it

        self.client = jack.Client(name, no_start_server=True)
        self.clock_in = self.client.midi_inports.register("in")
        self.out = self.client.midi_outports.register("out")
        self.song = SongPosition()  # the process callback's alone
        self.heard: queue.SimpleQueue[int | None] = queue.SimpleQueue()  # 16ths heard → the answering thread
        self.pending: collections.deque[bytes] = collections.deque()  # answers → the next cycle's start
        self.counts = {"ticks": 0, "answered": 0}
        self.client.set_process_callback(self._process)
        self.answerer = threading.Thread(target=self._answer, daemon=True)

    def start(self) -> None:
        self.answerer.start()
        self.client.activate()

    def _process(self, frames: int) -> None:
        self.out.clear_buffer()
        while self.pending:
            self.out.write_midi_event(0, self.pending.popleft())  # at the cycle's start, as rtmidi writes
        for _, data in self.clock_in.incoming_midi_events():
            position = self.song.apply(list(bytes(data)))
            if position is not None:
                self.counts["ticks"] += 1
                if position % TICKS_PER_16TH == 0:
                    self.heard.put(position)

    def _answer(self) -> None:
        while self.heard.get() is not None:
            self.pending.append(bytes([0x90 | ECHO_CHANNEL, ECHO_PITCH, ECHO_VELOCITY]))
            self.pending.append(bytes([0x80 | ECHO_CHANNEL, ECHO_PITCH, 0]))
            self.counts["answered"] += 1

    def close(self) -> None:
        self.heard.put(None)
        self.answerer.join(timeout=2)
        self.client.deactivate()
        self.client.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m musicbridge.benchmarks.jack_echo NAME")
    try:
        import jack
    except ImportError:
        sys.exit("jack_echo: JACK-Client is not installed: pip install JACK-Client==0.5.5")
    try:
        echo = Echo(args[0])
    except jack.JackError as error:
        sys.exit(f"jack_echo: no JACK client {args[0]!r} on the server: {error}")
    echo.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    echo.close()
    print(json.dumps(echo.counts), flush=True)


if __name__ == "__main__":
    main()
