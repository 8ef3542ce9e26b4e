"""Sync to an outside MIDI clock, measured from outside.

Where `musicbridge serve` puts its answers on the grid of a clock nobody here wrote.

The rig (benchmarks/jack_rig.py), all real, on one private JACK server (dummy driver, 48 kHz, 64 frames):
- the clock: Debian's jack_midi_clock, driven by jack_transport (timebase master at the tempo, then play):
  Start, then 24 ticks a beat placed on their exact frame; -J adds its artificial jitter (each tick interval
  varied by up to that share, so the phase wanders);
- a keyboard player following that clock plays a phrase (a note each beat) into "musicbridge in", and with
  `traffic`, what real keyboards send besides: Active Sensing every 300 ms and a 1 KB sysex 20 times a second;
- the daemon: `serve --clock midi` (continue mode: answers every bar), priorities as it decides them;
- jack_midi_dump -a records the clock and the daemon's output on one port: both on JACK's sample timeline.
The daemon announces over OSC (/musicbridge/gen/*) the beat each note is meant for; the clock's grid is its own
ticks as recorded (the tick on each 16th). Per configuration (tempo × jitter × traffic), each answer note-on's
offset from its 16th on that grid: median, jitter p99 (|offset − median|), drift (the slope of the offsets over
the run) and what is missing; and the clock's own unpredictability (a 16th's tick against the one before it plus
a mean interval): -J's jitter is a random walk, so that p99 is a floor no follower gets under (1.4 ms at 90 bpm
with -J 5, and JACK's 1.33 ms cycles come on top: simulated, 2.3 ms p99 at best there). Targets: |median| ≤ 2 ms,
jitter p99 ≤ 2 ms, drift over the run ≤ 1 ms.

The same-run baseline: a pure echo client (benchmarks/jack_echo.py) on the same server, beside the daemon in every
run, answers each 16th's tick with a note on channel 16 from an ordinary thread, recorded by the same dump. Its
offsets from the ticks (`baseline_echo`) are what the server and the machine cost any Python client in that run —
the cycle's quantization, a non-real-time jackd's late cycles, the VM's steal — and the row's
`jitter_p99_over_baseline` is the daemon's jitter p99 over the echo's: near 1, the daemon is as steady as the
machine lets a client be; well above, the rest is the daemon's own. (None when either has no figure, or the
echo's p99 is 0: at 90 and 150 bpm without -J every 16th falls on the same place in its cycle.)

A run in which the daemon's answers or the echo measured no notes fails the benchmark (exit 1): a result without
notes means nothing. When the rig fails part way (the JACK server gone or hung, a daemon that exits), the runs
measured before are written all the same, `stopped_early` / `teardown_failed` say what happened, and it exits 3.

    python -m musicbridge.benchmarks.bench_clock [--bpm 90 120 150] [--jitter 5] [--traffic both] [--seconds 60]
    musicbridge bench-clock …   (the same)
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from musicbridge.benchmarks.cli import benchmark_parser, conclude, emit, teardown
from musicbridge.benchmarks.jack_echo import ECHO_CHANNEL
from musicbridge.benchmarks.jack_rig import (
    CLOCK_PORT,
    PERIOD,
    RATE,
    RIG_ERRORS,
    SYSEX_BYTES,
    TICKS_PER_16TH,
    ClockFollower,
    ClockTimeline,
    EchoClient,
    JackMidiClock,
    JackServer,
    JackTransport,
    MidiDump,
    ServeProcess,
    describe,
    echo_offsets,
    note_ons,
    placed_notes,
    planned_notes,
)
from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.bridge.midi_io import IN_PORT_NAME, OUT_PORT_NAME
from musicbridge.bridge.priority import realtime_threads

PHRASE = [(beat, beat + 0.5, pitch, 90) for beat, pitch in enumerate((60, 64, 67, 72))]  # a bar, looped
SENSING_S, SYSEX_PER_S = 0.3, 20.0  # a keyboard's Active Sensing; a controller's sysex stream
TARGETS = {"median_abs_ms": 2.0, "jitter_p99_ms": 2.0, "drift_over_run_ms": 1.0}
XRUN = re.compile(r"xrun|was not finished", re.IGNORECASE)
LATE_CLIENT = re.compile(r"client = (\S+?),? was not finished")  # jackd names the client that made a cycle late
DRIVER_LATE = re.compile(r"JackTimedDriver::Process XRun")  # the dummy driver's own timer woke late (no client's)
ECHO_NAME = "clockbench-echo"
ECHO_CLIENT = ("a pure echo client on the same server in the same run (benchmarks/jack_echo.py, JACK-Client): "
               "answers each 16th's tick with a note from an ordinary thread, written at the next cycle's start")


def _stats(offsets_ms: np.ndarray, times_s: np.ndarray) -> dict:
    median = float(np.median(offsets_ms))
    slope = float(np.polyfit(times_s, offsets_ms, 1)[0]) if len(offsets_ms) > 2 and np.ptp(times_s) > 0 else 0.0
    quarter = max(1, len(offsets_ms) // 4)
    return {
        "median_ms": round(median, 3),
        "jitter_p99_ms": round(float(np.percentile(np.abs(offsets_ms - median), 99)), 3),
        "max_abs_ms": round(float(np.abs(offsets_ms).max()), 3),
        "p1_p99_ms": [round(float(np.percentile(offsets_ms, q)), 3) for q in (1, 99)],
        "drift_ms_per_min": round(slope * 60, 3),
        "drift_over_run_ms": round(slope * float(np.ptp(times_s)), 3),
        "median_first_quarter_ms": round(float(np.median(offsets_ms[:quarter])), 3),
        "median_last_quarter_ms": round(float(np.median(offsets_ms[-quarter:])), 3),
    }


def run_once(jack: JackServer, model: str, bpm: float, jitter: float, traffic: bool, seconds: float,
             workdir: Path, serve_options: list[str]) -> dict:
    tag = f"{bpm:g}bpm-J{jitter:g}-{'traffic' if traffic else 'quiet'}"
    stats_path = workdir / f"stats-{tag}.json"
    stopped: dict[str, int] = {}
    with contextlib.ExitStack() as parts:  # every part ends however the run goes, newest first, the daemon last
        serve = ServeProcess(jack, ["--clock", "midi", "--model", model, "--seed", "1", "--log-level", "info",
                                    "--stats-json", str(stats_path), *serve_options], workdir / f"serve-{tag}.log")
        parts.callback(lambda: stopped.setdefault("code", serve.stop()))
        serve.wait_ready()
        dump = MidiDump(jack, "clockbench-dump")
        parts.callback(dump.close)
        clock = JackMidiClock(jack, bpm, jitter)
        parts.callback(clock.close)
        player = ClockFollower("clockbench-player", PHRASE, loop_beats=len(PHRASE),
                               sensing_s=SENSING_S if traffic else 0.0, sysex_per_s=SYSEX_PER_S if traffic else 0.0)
        parts.callback(player.close)
        echo = EchoClient(jack, ECHO_NAME)  # the baseline: beside the daemon, in the same run
        parts.callback(echo.close)
        for source, destination in ((CLOCK_PORT, IN_PORT_NAME), (CLOCK_PORT, dump.port), (OUT_PORT_NAME, dump.port),
                                    (CLOCK_PORT, "clockbench-player-clock:in"),
                                    ("clockbench-player:out", IN_PORT_NAME),
                                    (CLOCK_PORT, f"{ECHO_NAME}:in"), (f"{ECHO_NAME}:out", dump.port)):
            jack.connect(source, destination)
        transport = JackTransport(jack, bpm)
        parts.callback(transport.close)
        time.sleep(0.5)  # the first message after a new connection can be lost
        log_before = len(jack.log_text())  # what jackd logs from here on is this run's
        transport.play()
        time.sleep(seconds / 2)
        daemon_rt = sorted(realtime_threads(serve.process.pid).values())  # read from outside, mid-run
        time.sleep(seconds / 2)
        transport.stop()
        time.sleep(0.5)
        logged = jack.log_text()[log_before:]
        xruns = len(XRUN.findall(logged))
        late_clients = collections.Counter(LATE_CLIENT.findall(logged))
        driver_late = len(DRIVER_LATE.findall(logged))
    code = stopped["code"]
    if code != 0:
        said = [line for line in serve.log_path.read_text(errors="replace").splitlines() if line.strip()]
        raise RuntimeError(f"serve exited with code {code} in the run at {tag} (its last log line: "
                           f"{said[-1][-300:] if said else ''!r}; run again with --keep to read its log)")
    daemon = json.loads(stats_path.read_text())
    events = dump.events()
    timeline = ClockTimeline(events)
    placed, missing = placed_notes(timeline, planned_notes(serve.phrases()), note_ons(events, channel=0))
    rate = jack.rate
    frames = np.array([tick_frame for tick_frame in timeline.tick_frames.values()], dtype=np.float64)
    # What no follower can know in advance: a 16th's tick against the tick before it plus a mean interval (the
    # best guess from everything up to that tick). -J makes it a random walk; its p99 is the floor of the jitter.
    ticks = timeline.tick_frames
    guesses = [ticks[k] - ticks[k - 1] - np.median(np.diff(frames)) for k in ticks
               if k % TICKS_PER_16TH == 0 and k - 1 in ticks]
    run = {
        "bpm": bpm, "jitter_percent": jitter, "traffic": traffic, "seconds": seconds,
        "clock": {"ticks": len(timeline.ticks),
                  "bpm_measured": round(60 * rate / (np.mean(np.diff(frames)) * TICKS_PER_BEAT), 3)
                  if len(frames) > 1 else None,
                  "unpredictable_p99_ms": round(float(np.percentile(np.abs(guesses), 99)) / rate * 1000, 3)
                  if guesses else None},
        "notes_measured": len(placed), "notes_missing": missing,
        "answers": len(serve.phrases()),
        "jack_xruns": xruns,
        # Why the cycles were late: the dummy driver's timer waking late (the machine: each such cycle moves the
        # frames against the system clock), or a client not finished in time (jackd names it).
        "jack_xruns_driver_woke_late": driver_late,
        "jack_late_clients": dict(late_clients.most_common()),
        "daemon": {key: daemon.get(key) for key in ("midi_in", "midi_in_ignored", "lost_clock_ticks", "clock_silences",
                                                     "clock_time", "clock_time_switches", "clock_misses_ms",
                                                     "late_dropped", "deadline_missed", "timing_error_ms", "scheduler")},
        "daemon_realtime_threads": daemon_rt,  # SCHED_FIFO priorities of the daemon's threads (/proc), mid-run
    }
    if placed:
        offsets_ms = np.array([(frame - grid) / rate * 1000 for _, frame, grid, _ in placed])
        times_s = np.array([grid / rate for _, _, grid, _ in placed])
        run.update(_stats(offsets_ms, times_s))
        run["meets_targets"] = (abs(run["median_ms"]) <= TARGETS["median_abs_ms"]
                                and run["jitter_p99_ms"] <= TARGETS["jitter_p99_ms"]
                                and abs(run["drift_over_run_ms"]) <= TARGETS["drift_over_run_ms"])
    run["baseline_echo"] = echo_figures(timeline, events, rate, echo.counts)
    baseline_p99 = run["baseline_echo"].get("jitter_p99_ms")
    run["jitter_p99_over_baseline"] = (round(run["jitter_p99_ms"] / baseline_p99, 2)
                                       if placed and baseline_p99 else None)  # None: either side has no figure
    return run


def echo_figures(timeline: ClockTimeline, events: list[tuple[int, list[int]]], rate: int, counts: dict) -> dict:
    """The pure echo's offsets from each 16th's tick (ms, on the same recording as the daemon's notes)."""
    answered, missing = echo_offsets(timeline, note_ons(events, channel=ECHO_CHANNEL))
    figures = {"client": ECHO_CLIENT, "notes_measured": len(answered), "notes_missing": missing,
               "ticks_heard": counts.get("ticks"), "answers_sent": counts.get("answered")}
    if answered:
        offsets_ms = np.array([offset / rate * 1000 for _, offset in answered])
        figures.update(_stats(offsets_ms, np.array([grid / rate for grid, _ in answered])))
    return figures


def problems(runs: list[dict]) -> list[str]:
    """Why figures mean nothing: runs where the daemon's answers, or the echo baseline's, measured no note."""
    found = []
    for who, empty in (("answer notes", [r for r in runs if not r["notes_measured"]]),
                       ("echo baseline notes", [r for r in runs if not r["baseline_echo"]["notes_measured"]])):
        if empty:
            names = ", ".join(f"{r['bpm']:g} bpm, jitter {r['jitter_percent']:g} %, "
                              f"{'with' if r['traffic'] else 'without'} traffic" for r in empty)
            found.append(f"no {who} were measured in {len(empty)} run(s) ({names}): their figures mean nothing")
    if not runs:
        found.append("no run was measured")
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = benchmark_parser("bench-clock", __doc__.split("\n")[0])
    parser.add_argument("--model", default="mel_2bar", help="model the daemon serves (default: the shipped mel_2bar)")
    parser.add_argument("--bpm", type=float, nargs="+", default=[90.0, 120.0, 150.0], help="tempi to run at")
    parser.add_argument("--jitter", type=float, default=5.0,
                        help="jack_midi_clock -J percent for the runs with jitter (0: no runs with jitter)")
    parser.add_argument("--traffic", choices=("both", "on", "off"), default="both",
                        help="active sensing + 1 KB sysex on the clock's input: runs with, without, or both")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of clock per run")
    parser.add_argument("--serve-option", action="append", default=[],
                        help="an extra `serve` option for every run (repeatable), e.g. --serve-option=--no-realtime")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (daemon logs and stats)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-clock-"))
    runs: list[dict] = []
    result = {
        "benchmark": "clock", "model": args.model,
        "clock_source": "jack_midi_clock driven by jack_transport (timebase master)",
        "baseline": ECHO_CLIENT,
        "jack": {"driver": "dummy", "rate": RATE, "period": PERIOD, "period_ms": round(PERIOD / RATE * 1000, 3),
                 "sync": True, "realtime": False},
        "traffic": {"active_sensing_every_s": SENSING_S, "sysex_per_s": SYSEX_PER_S, "sysex_bytes": SYSEX_BYTES},
        "targets": TARGETS, "runs": runs,
        "stopped_early": None, "teardown_failed": None,  # sentences when the rig failed part way
    }
    jack = None
    try:  # each run goes into `runs` as it finishes: whatever stops the benchmark, they are written
        jack = JackServer().start()
        os.environ.update(jack.client_env)  # this process's own clients (the player)
        for bpm in args.bpm:
            for jitter in sorted({0.0, args.jitter}):
                for traffic in {"both": (False, True), "on": (True,), "off": (False,)}[args.traffic]:
                    runs.append(run_once(jack, args.model, bpm, jitter, traffic, args.seconds, workdir,
                                         args.serve_option))
                    print(json.dumps(runs[-1]), file=sys.stderr)
    except (*RIG_ERRORS, RuntimeError) as error:  # RuntimeError: the daemon failed (ServeProcess, run_once)
        result["stopped_early"] = f"stopped early: {describe(error)}"
    finally:  # also while an unexpected error goes up: the runs measured are written before its traceback
        result["teardown_failed"] = teardown(jack, workdir, args.keep)
        result["machine"] = {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
        emit(result, args.json_out)
    conclude("bench_clock", result, problems(runs),
             "Read the daemon's log (run again with --keep) for why it did not answer.")
    return result


if __name__ == "__main__":
    main()
