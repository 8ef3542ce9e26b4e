"""Timing of `musicbridge serve` through a real JACK server, played by a separate client process (this one).

Three parts, each a set of daemon runs on one private JACK server (--parts; all by default, `baseline` when
--baseline-rev names the revision to compare with):

schedulers — for each scheduler (the precise one with real-time priority, the same at normal priority, and the
naive time.sleep baseline at normal priority, all in the same run), tempo (120, 180 bpm) and input (quiet, or a
flood of ~9000 MIDI messages a second from another process):
- this process plays MIDI clock and a melody into "musicbridge in" (continue mode answers every bar) and records
  "musicbridge out" with JACK's own arrival timestamps;
- the flood never changes the phrase: controllers, aftertouch and channel pressure on the melody's channel, and
  notes on channel 16, which the daemon is told to ignore (--in-channel 1) — the answers stay the same, so what
  the flood changes is timing alone;
- output timing error = arrival of each answer note − the clock's time of its beat (the beat is known from the
  /musicbridge/gen/* replies); the JACK floor is the same measure for the clock's own ticks looped back
  (what the MIDI system alone adds: a period of 64 frames is 1.33 ms); Stop → all-notes-off = from the Stop
  sent to the all-notes-off that ends the daemon's flush, as recorded;
- from the daemon's --stats-json: generation latency (trigger → phrase ready), the scheduler's send error
  (MIDI handed to the port − due time) and late-dropped notes; answers = bar lines something was answered from
  (a fallback and the late answer that replaces it from the same bar line are one), on the next bar = those that
  started on the bar line right after the bar that triggered them.

deadline — the deadline policy with a model too slow for the deadlines: mel_2bar at Magenta's sizes (encoder
2048 per direction, decoder 3 × 2048, z 512: cat-mel_2bar_big; untrained, fp32 — latency does not depend on the
weights), at 120 bpm, once with `--fallback repeat` and once with `--fallback hold`. Reported: deadlines missed,
late answers, fallbacks played, notes dropped for being past due, and from the recorded output (the witness):
whether any note-on arrived later than its announced beat by more than LATE_BOUND_MS (none may; measured against
the clock's ticks as they came through JACK, see deadline_figures), note-ons announced by no reply, and the bars
that stayed silent after the first note (none may, with `repeat`). Run it on an idle machine: the slow model
keeps one core busy, and what else runs shows up as JACK stalls (jack_floor_ms) and scheduler stalls.

baseline — latency before/after in one run: --baseline-rev REV extracts that revision's packages (git archive: the
checkout is not touched) into the work directory and runs its own `python -m musicbridge serve` (same venv, its
tree first on PYTHONPATH), then this tree's, alternately --baseline-pairs times, on the same model, tempi and
precise scheduler; reports both and current / baseline ratios of the medians over the pairs.

    python -m musicbridge.benchmarks.bench_bridge [--model DIR] [--bars 16] [--parts …] [--json-out FILE]
    python -m musicbridge.benchmarks.bench_bridge --baseline-rev 1134088   (the pre-engine revision)
    musicbridge bench-bridge …   (the same)

Without --model, an untrained mel_2bar model is exported first (the latency of a trained one is the same); without
--slow-model, the Magenta-size one (about a minute; torch is used here, for the export only, never by the daemon).
A part that measured nothing, a slow model that missed no deadline, a note sent late or a silent bar with `repeat`
fails the benchmark (exit 1, after the JSON): its figures would mean nothing, or the policy does not hold.
Whatever stops it part way — the JACK server gone or hung (jack_lsp gets no answer within 10 s), a daemon that
wrote no summary, a teardown that fails — every run measured before is in the JSON all the same, `stopped_early`
and `teardown_failed` say what happened in a sentence (null when nothing did), and it exits 3 (1 when nothing was
measured).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicbridge.benchmarks.cli import benchmark_parser, conclude, emit, teardown
from musicbridge.benchmarks.jack_rig import (
    RIG_ERRORS,
    ClockPlayer,
    JackServer,
    MidiPeer,
    Recorder,
    describe,
    end_process,
)
from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.codecs import BEATS_PER_BAR, STEP_BEATS

REPO = Path(__file__).resolve().parents[1]  # the checkout this file is in (--baseline-rev reads its history)
MELODY = (60, 64, 67, 72)  # four quarter notes a bar
FLOOD = """
import random, sys, time, rtmidi
out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="flood")
out.open_virtual_port("out")
print("ready", flush=True)
sys.stdin.readline()
rng = random.Random(1)
while True:
    for _ in range(2):
        pitch, value = rng.randrange(40, 90), rng.randrange(128)
        out.send_message([0x9F, pitch, 80]); out.send_message([0x8F, pitch, 0])  # channel 16: not listened to
        out.send_message([0xB0, 1, value])  # modulation wheel
        out.send_message([0xA0, pitch, value])  # polyphonic aftertouch
        out.send_message([0xD0, value])  # channel pressure
    time.sleep(0.001)
"""
IN_CHANNEL = "1"  # the melody's channel; the flood's notes are on channel 16
ANSWER_CHANNEL = 0  # a melody model answers on MIDI channel 1
ALL_NOTES_OFF = 123  # the controller that ends the daemon's flush (bridge/midi_io.py)
PARTS = ("schedulers", "deadline", "baseline")
VARIANTS = {  # name: serve options
    "precise": ["--scheduler", "precise", "--realtime"],
    "precise-normal-priority": ["--scheduler", "precise", "--no-realtime"],
    "sleep": ["--scheduler", "sleep", "--no-realtime"],  # the naive baseline: time.sleep until due, then send
}
# The deadline part: Magenta's cat-mel_2bar_big sizes (magenta/models/music_vae/configs.py) on mel_2bar's config.
MAGENTA_SIZES = {"enc_size": 2048, "enc_layers": 1, "dec_size": 2048, "dec_layers": 3, "z_size": 512}
DEADLINE_BPM = 120.0
FALLBACKS = ("repeat", "hold")
# A received note-on later than its announced beat by more than this was sent late: the arrival jitter target is
# 2 ms (issue 12), a JACK period 1.33 ms; a note played late by a late answer would be tens to hundreds of ms late.
LATE_BOUND_MS = 5.0
DAEMON_EXIT_S = 30.0  # after SIGTERM the daemon flushes and writes its summary; then it is killed
RATIO_KEYS = ("generation_latency_ms", "model_ms", "send_error_ms", "arrival_error_ms", "arrival_jitter_ms")


class BenchError(Exception):
    """A benchmark that cannot run as asked: the message says why and what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values) -> dict:
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    return {"p50": round(float(np.percentile(data, 50)), 3), "p99": round(float(np.percentile(data, 99)), 3),
            "max": round(float(data.max()), 3), "n": int(data.size)}


# ---- one daemon run ---------------------------------------------------------------------------------------
@dataclass
class Capture:
    """What one daemon run left: the clock as played, the daemon's replies, what reached the recorder, its summary."""

    player: ClockPlayer  # tick_times: when each tick was meant to sound; time_of / beat_at convert
    stop_time: float  # when Stop was sent
    gen: list[tuple[str, tuple]]  # the /musicbridge/gen/* replies, in order
    messages: list[tuple[float, list[int]]]  # (arrival, message) of what "musicbridge out" sent
    floor_ticks: list[float]  # arrival of the clock's own ticks looped back through JACK (all of them, or [])
    stats: dict  # the daemon's --stats-json

    @property
    def floor_ms(self) -> list[float]:
        """What JACK alone adds to the clock's ticks: arrival − intended (ms; none when ticks were lost)."""
        intended = [self.player.tick_times[tick] for tick in sorted(self.player.tick_times)]
        return [(a - b) * 1000 for a, b in zip(self.floor_ticks, intended, strict=True)] if self.floor_ticks else []

    def heard_time_of(self, beat: float) -> float:
        """When the clock's tick at `beat` arrived through JACK (between ticks: at the tempo; the intended time
        when the loop-back lost ticks): what a note at `beat` is measured against, so that a stall of JACK
        itself, which delays the clock as much as the note, is not counted as the note's lateness."""
        if not self.floor_ticks:
            return self.player.time_of(beat)
        first = min(self.player.tick_times)  # ticks are numbered on from the first, one by one
        k = min(max(round(beat * TICKS_PER_BEAT) - first, 0), len(self.floor_ticks) - 1)  # the nearest tick
        return self.floor_ticks[k] + self.player.time_of(beat) - self.player.tick_times[first + k]


def play(peer: MidiPeer, bpm: float, bars: int) -> tuple[ClockPlayer, float]:
    """MIDI clock from the peer (Start just before the first tick), a melody note on every beat, Stop at the
    end; returns the player and when Stop was sent."""
    beats = bars * BEATS_PER_BAR
    player = ClockPlayer(peer, bpm)
    player.add_notes((beat, beat + 1, MELODY[beat % len(MELODY)], 90) for beat in range(beats))
    player.start(beats + 1 / TICKS_PER_BEAT, delay=0.2)  # up to the tick on the last bar line, included
    player.join(timeout=beats * 60.0 / bpm + 10)
    return player, peer.send([0xFC])


def run_serve(jack: JackServer, model: str, serve_args: list[str], bpm: float, bars: int, workdir: Path,
              name: str, flood: bool = False, env: dict[str, str] | None = None) -> Capture:
    """One `python -m musicbridge serve` (the one `env` imports) played `bars` bars of clock and melody. Every
    part it starts is ended however the run goes, newest first (the flood, the daemon, the recorders), so a run
    that fails leaves no process behind for the next one."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer

    jack.check_running()  # a server gone since the last run is said as such, not as the first client's failure
    osc_port, reply_port = free_port(), free_port()
    stats = workdir / f"stats-{name}.json"
    gen: list[tuple[str, tuple]] = []
    with contextlib.ExitStack() as parts:
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: gen.append((address, args)))
        server = BlockingOSCUDPServer(("127.0.0.1", reply_port), dispatcher)
        parts.callback(server.server_close)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        parts.callback(server.shutdown)
        peer = MidiPeer("bench")  # the clock and the melody out, the answers in
        parts.callback(peer.close)
        floor = Recorder("bench-floor")  # the clock looped back
        parts.callback(floor.close)
        log = parts.enter_context(open(workdir / f"serve-{name}.log", "w"))  # noqa: SIM115
        daemon = subprocess.Popen(
            [sys.executable, "-m", "musicbridge", "serve", "--midi-api", "jack", "--clock", "midi", "--model", model,
             "--seed", "1", "--in-channel", IN_CHANNEL, *serve_args, "--stats-json", str(stats), "--no-status",
             "--log-level", "warning", "--osc-port", str(osc_port), "--osc-reply-port", str(reply_port)],
            env={**jack.env, **(env or {})}, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        parts.callback(end_process, daemon, signal.SIGTERM, DAEMON_EXIT_S)  # it writes its summary on SIGTERM
        peer.connect(jack)
        jack.connect("bench:to-bridge", "bench-floor:in")
        if flood:
            flooder = subprocess.Popen([sys.executable, "-c", FLOOD], env=jack.env, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            parts.callback(end_process, flooder, signal.SIGTERM, 10.0)
            flooder.stdout.readline()
            jack.connect("flood:out", "musicbridge in")
            flooder.stdin.write("go\n")
            flooder.stdin.flush()
        time.sleep(0.5)  # the first message after a new connection can be lost
        player, stop_time = play(peer, bpm, bars)
        time.sleep(0.3)
    if not stats.exists():
        jack.check_running()  # the server died under the run: that, not the daemon, is the news
        raise BenchError(f"the daemon of run {name} wrote no summary (exit code {daemon.returncode}); its log: "
                         f"{workdir / f'serve-{name}.log'} (run again with --keep to read it)")
    ticks = [t for t, m in floor.events() if m == [0xF8]]
    complete = len(ticks) == len(player.tick_times)  # else the loop-back lost ticks: not comparable one by one
    return Capture(player, stop_time, gen, peer.messages(), ticks if complete else [], json.loads(stats.read_text()))


def phrases_of(gen: list[tuple[str, tuple]]) -> list[dict]:
    """The gen/* sequences as [{"id", "start", "notes": [(pitch, beat relative to start)]}], by start, then id."""
    phrases: dict[int, dict] = {}
    for address, args in gen:
        entry = phrases.setdefault(args[0], {"id": args[0], "notes": []})
        if address.endswith("/begin"):
            entry["start"] = args[2]
        elif address.endswith("/note"):
            entry["notes"].append((args[1], args[3]))
    return sorted((p for p in phrases.values() if "start" in p), key=lambda p: (p["start"], p["id"]))


def answer_ons(capture: Capture) -> list[tuple[float, int]]:
    """(arrival, pitch) of the answer's note-ons before Stop."""
    return [(t, m[1]) for t, m in capture.messages if len(m) == 3 and m[0] == 0x90 | ANSWER_CHANNEL and m[2] > 0
            and t < capture.stop_time]


def stop_to_all_notes_off_ms(capture: Capture) -> float | None:
    """From Stop sent to the first all-notes-off that arrived after it (the end of the daemon's flush)."""
    after = [t for t, m in capture.messages if t >= capture.stop_time and len(m) == 3 and m[0] & 0xF0 == 0xB0
             and m[1] == ALL_NOTES_OFF]
    return round((after[0] - capture.stop_time) * 1000, 3) if after else None


def bar_lines_answered(phrases: list[dict]) -> list[float]:
    """The distinct bar lines something was answered from: a fallback and the late answer that takes over from
    the same bar line count once."""
    return sorted({p["start"] for p in phrases})


# ---- schedulers: timing of the answers -----------------------------------------------------------------------
def timing_figures(capture: Capture, bars: int) -> dict:
    """Arrival error of each note meant to play (each phrase until the next begins) against the clock's grid."""
    phrases = phrases_of(capture.gen)
    ons = answer_ons(capture)
    errors, missing = [], 0
    end_beat = bars * BEATS_PER_BAR
    for i, phrase in enumerate(phrases):
        cut = min(phrases[i + 1]["start"] if i + 1 < len(phrases) else end_beat, end_beat)
        for pitch, rel in phrase["notes"]:
            beat = phrase["start"] + rel
            if beat >= cut:
                continue
            intended = capture.player.time_of(beat)
            near = [t for t, p in ons if p == pitch and abs(t - intended) < 0.05]
            if near:
                errors.append((min(near, key=lambda t: abs(t - intended)) - intended) * 1000)
            else:
                missing += 1
    starts = bar_lines_answered(phrases)
    stats = capture.stats
    errors_arr = np.asarray(errors)
    return {
        "generation_latency_ms": stats["generation_latency_ms"],
        "model_ms": stats.get("model_ms"),
        "send_error_ms": stats["timing_error_ms"],
        "arrival_error_ms": percentiles(np.abs(errors_arr)),
        "arrival_error_signed_median_ms": round(float(np.median(errors_arr)), 3) if errors else None,
        "arrival_jitter_ms": percentiles(np.abs(errors_arr - np.median(errors_arr))) if errors else percentiles([]),
        "jack_floor_ms": percentiles(np.abs(capture.floor_ms)),
        "stop_to_all_notes_off_ms": stop_to_all_notes_off_ms(capture),
        "answers": len(starts), "gen_sequences": len(phrases),
        "answers_on_next_bar": sum(1 for k, s in enumerate(starts) if s == BEATS_PER_BAR * (k + 1)),  # bar k+1 ← k
        "expected_answers": bars,
        "late_dropped": stats["late_dropped"], "notes_missing": missing,
        "midi_in": stats["midi_in"], "scheduler_realtime": stats["scheduler"]["realtime"],
        "phrases": [[p["start"], *sorted(p["notes"])] for p in phrases],  # what was answered (compared, then dropped)
    }


def scheduler_runs(jack: JackServer, model: str, bpms: list[float], bars: int, workdir: Path,
                   runs: list[dict]) -> None:
    """Appends each run to `runs` as it finishes, complete: a later run that fails leaves the earlier ones."""
    answered: dict[tuple[str, float], list] = {}  # (scheduler, bpm) → the phrases the run without flood answered
    for bpm in bpms:
        for flood in (False, True):
            for scheduler, options in VARIANTS.items():
                capture = run_serve(jack, model, options, bpm, bars, workdir, f"{scheduler}-{bpm:g}-{int(flood)}",
                                    flood=flood)
                figures = timing_figures(capture, bars)
                phrases = figures.pop("phrases")  # compared, not reported: "answers" counts them
                run = {"scheduler": scheduler, "bpm": bpm, "flood": flood, "bars": bars, **figures}
                if flood:  # the flood must not change what is answered, only (perhaps) when
                    run["same_phrases_as_without_flood"] = phrases == answered.get((scheduler, bpm))
                else:
                    answered[(scheduler, bpm)] = phrases
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)


def scheduler_ratios(runs: list[dict], bpms: list[float]) -> list[dict]:
    """The naive sleep scheduler's p99 over each precise variant's, per tempo and input, of the runs there are."""
    ratios = []
    for bpm in bpms:
        for flood in (False, True):
            pick = {r["scheduler"]: r for r in runs if r["bpm"] == bpm and r["flood"] == flood}
            if "sleep" not in pick:
                continue
            entry = {"bpm": bpm, "flood": flood}
            for key in ("send_error_ms", "arrival_error_ms", "arrival_jitter_ms"):
                base = pick["sleep"][key]["p99"]
                for variant in ("precise", "precise-normal-priority"):
                    ours = pick[variant][key]["p99"] if variant in pick else None
                    entry[f"{key}_p99_sleep_over_{variant}"] = round(base / ours, 2) if base and ours else None
            ratios.append(entry)
    return ratios


# ---- deadline: a slow model ------------------------------------------------------------------------------------
def deadline_figures(capture: Capture, bars: int) -> dict:
    """The deadline counts, and from the recorded output: how late each note-on was against the nearest beat some
    reply announced for its pitch (answers and fallbacks alike), and the bars without a note-on.

    Lateness is measured against the clock as the recorder heard it through JACK (Capture.heard_time_of): the slow
    model keeps a core busy, and on a 2-core machine JACK's own cycles then stall by tens of ms at times (the
    loop-back shows them: jack_floor_ms), delaying the clock's ticks as much as the notes. Against the intended
    grid too (lateness_vs_grid_ms), for the record."""
    phrases = phrases_of(capture.gen)
    announced: dict[int, list[float]] = {}
    for phrase in phrases:
        for pitch, rel in phrase["notes"]:
            announced.setdefault(pitch, []).append(phrase["start"] + rel)
    player = capture.player
    lateness, vs_grid, unannounced, per_bar = [], [], 0, Counter()
    for t, pitch in answer_ons(capture):
        beat = player.beat_at(t)
        per_bar[int(beat // BEATS_PER_BAR)] += 1
        near = [b for b in announced.get(pitch, []) if abs(b - beat) < STEP_BEATS]
        if not near:
            unannounced += 1
            continue
        nearest = min(near, key=lambda b: abs(b - beat))
        lateness.append((t - capture.heard_time_of(nearest)) * 1000)
        vs_grid.append((t - player.time_of(nearest)) * 1000)
    first = min(per_bar) if per_bar else bars
    silent = [bar for bar in range(first, bars) if not per_bar[bar]]
    stats = capture.stats
    late = [ms for ms in lateness if ms > LATE_BOUND_MS]
    return {
        "generation_latency_ms": stats["generation_latency_ms"], "model_ms": stats.get("model_ms"),
        "deadline_missed": stats["deadline_missed"], "late_answers": stats["late_answers"],
        "fallbacks": stats["fallbacks"], "answers_from_the_model": stats["answers"],
        "bar_lines_answered": len(bar_lines_answered(phrases)), "gen_sequences": len(phrases),
        "late_dropped": stats["late_dropped"],  # notes of late answers that were past due: dropped, not sent late
        "notes_received": len(lateness) + unannounced, "notes_unannounced": unannounced,
        "lateness_ms": percentiles(lateness), "late_bound_ms": LATE_BOUND_MS, "notes_late": len(late),
        "lateness_vs_grid_ms": percentiles(vs_grid), "jack_floor_ms": percentiles(np.abs(capture.floor_ms)),
        "first_bar_with_notes": first, "silent_bars": silent,
    }


def deadline_problems(run: dict) -> list[str]:
    """What the deadline run shows wrong: nothing measured, no deadline missed, a note late, a silent bar."""
    name = f"deadline run with --fallback {run['fallback']}"
    if not run["notes_received"]:
        return [f"{name}: no answer notes were received"]
    problems = []
    if not run["deadline_missed"]:
        problems.append(f"{name}: the slow model missed no deadline (generation p50 "
                        f"{run['generation_latency_ms']['p50']} ms), so the policy was not exercised; use a slower "
                        "--slow-model or a faster tempo")
    if run["notes_late"]:
        problems.append(f"{name}: {run['notes_late']} note(s) arrived more than {LATE_BOUND_MS:g} ms after their beat "
                        f"(latest {run['lateness_ms']['max']} ms; JACK's own loop-back up to "
                        f"{run['jack_floor_ms']['max']} ms in this run: on a busy machine, run it again idle)")
    if run["notes_unannounced"]:
        problems.append(f"{name}: {run['notes_unannounced']} note(s) played that no reply announced")
    if run["fallback"] == "repeat" and run["silent_bars"]:
        problems.append(f"{name}: bars {run['silent_bars']} were silent")
    return problems


def slow_model(workdir: Path) -> tuple[str, float]:
    """mel_2bar at Magenta's sizes, untrained, exported fp32 (torch only here, never in the daemon): (dir, s)."""
    import dataclasses

    import torch

    from musicbridge.export.exporter import export_model
    from musicbridge.models import build_model, get_preset

    started = time.perf_counter()
    torch.manual_seed(0)
    config = dataclasses.replace(get_preset("mel_2bar").model, **MAGENTA_SIZES)
    model = build_model(config).eval()
    out = workdir / "mel_2bar-magenta-size"
    export_model(model, out, preset="mel_2bar (Magenta sizes)", variants=("fp32",))
    return str(out), round(time.perf_counter() - started, 1)


def deadline_runs(jack: JackServer, model: str, bars: int, workdir: Path, runs: list[dict]) -> None:
    """Appends each run to `runs` as it finishes."""
    for fallback in FALLBACKS:
        capture = run_serve(jack, model, [*VARIANTS["precise"], "--fallback", fallback], DEADLINE_BPM, bars,
                            workdir, f"deadline-{fallback}")
        runs.append({"fallback": fallback, "bpm": DEADLINE_BPM, "bars": bars, **deadline_figures(capture, bars)})
        print(json.dumps(runs[-1]), file=sys.stderr)


# ---- baseline: another revision's daemon -----------------------------------------------------------------------
def _git(*args: str, binary: bool = False):
    result = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True)
    if result.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed in {REPO}: "
                         f"{result.stderr.decode(errors='replace').strip()[-500:]}")
    return result.stdout if binary else result.stdout.decode()


def baseline_tree(rev: str, workdir: Path) -> tuple[str, dict[str, str]]:
    """`rev`'s packages extracted under `workdir` (git archive: the checkout is not touched) and laid out as its
    pyproject.toml maps them into `musicbridge`; returns (the commit, the environment whose Python imports that
    tree's `musicbridge` ahead of the installed one). Checked: every package of the map imports from the tree."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        sha = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except BenchError:
        raise BenchError(f"--baseline-rev {rev}: not a commit of the checkout at {REPO}; name one of its history "
                         "(e.g. 1134088, the revision before the engine)") from None
    mapping = tomllib.loads(_git("show", f"{sha}:pyproject.toml"))["tool"]["setuptools"]["package-dir"]
    tree = workdir / f"baseline-{sha[:10]}"
    tree.mkdir(parents=True)
    archive = _git("archive", "--format=tar", sha, "--", *sorted(set(mapping.values())), binary=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    site = workdir / f"baseline-{sha[:10]}-site"
    site.mkdir()
    root = tree / mapping["musicbridge"]
    (site / "musicbridge").symlink_to(root, target_is_directory=True)
    for name, folder in mapping.items():
        if name != "musicbridge":  # musicbridge.<stage> → <folder>, as setuptools' package-dir lays it out
            root.joinpath(*name.split(".")[1:]).symlink_to(tree / folder, target_is_directory=True)
    env = {"PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    names = [*mapping, "musicbridge.bridge.daemon"]
    code = "import importlib.util, sys; print('\\n'.join(importlib.util.find_spec(n).origin for n in sys.argv[1:]))"
    found = subprocess.run([sys.executable, "-c", code, *names], env={**os.environ, **env}, cwd=workdir,
                           capture_output=True, text=True)
    origins = found.stdout.split("\n")[:len(names)]
    outside = [f"{n} ({o})" for n, o in zip(names, origins, strict=False)
               if not Path(o).resolve().is_relative_to(tree.resolve())]
    if found.returncode != 0 or len(origins) < len(names) or outside:
        raise BenchError(f"the baseline tree of {rev} does not import as musicbridge: {found.stderr.strip()[-500:]} "
                         f"{', '.join(outside)}")
    return sha, env


def baseline_runs(jack: JackServer, model: str, env: dict[str, str], bpms: list[float], bars: int, pairs: int,
                  workdir: Path, runs: list[dict]) -> None:
    """The baseline tree's daemon (`env`, from baseline_tree) and this tree's, alternately; appends each run to
    `runs` as it finishes."""
    for bpm in bpms:
        for pair in range(pairs):  # alternately, so that a change in the machine's load falls on both
            for tree, tree_env in (("baseline", env), ("current", None)):
                capture = run_serve(jack, model, VARIANTS["precise"], bpm, bars, workdir,
                                    f"{tree}-{bpm:g}-{pair}", env=tree_env)
                figures = timing_figures(capture, bars)
                del figures["phrases"]
                runs.append({"tree": tree, "bpm": bpm, "pair": pair, **figures})
                print(json.dumps(runs[-1]), file=sys.stderr)


def baseline_ratios(runs: list[dict], bpms: list[float]) -> list[dict]:
    """current ÷ baseline of the medians over the pairs, per tempo, of the runs there are (None: a side missing)."""
    ratios = []
    for bpm in bpms:
        entry = {"bpm": bpm}
        for key in RATIO_KEYS:
            for stat in ("p50", "p99"):
                medians = {}
                for tree in ("baseline", "current"):
                    values = [r[key][stat] for r in runs if r["tree"] == tree and r["bpm"] == bpm
                              and r.get(key) and r[key][stat] is not None]
                    medians[tree] = float(np.median(values)) if values else None
                base, ours = medians["baseline"], medians["current"]
                entry[f"{key}_{stat}_current_over_baseline"] = round(ours / base, 3) if base and ours else None
        ratios.append(entry)
    return ratios


def _current_revision() -> str:
    try:
        described = _git("describe", "--always", "--dirty").strip()
    except BenchError:
        return "unknown"
    return described


# ---- main ------------------------------------------------------------------------------------------------------
def default_model(workdir: Path) -> str:
    """An untrained mel_2bar exported with the real exporter (torch only here, never in the daemon)."""
    import torch

    from musicbridge.export.exporter import export_model
    from musicbridge.models import build_model, get_preset

    torch.manual_seed(0)
    model = build_model(get_preset("mel_2bar").model).eval()
    out = workdir / "mel_2bar-untrained"
    export_model(model, out, preset="mel_2bar", variants=("fp32", "int8"))
    return str(out)


def failures(result: dict) -> list[str]:
    """Why the figures cannot be trusted or the policy did not hold (empty: all is well)."""
    problems = []
    runs = [*result.get("runs", []), *result.get("deadline_policy", {}).get("runs", []),
            *result.get("before_after", {}).get("runs", [])]
    if not runs:
        problems.append("no run was measured")
    empty = [r for r in result.get("runs", []) if not r["arrival_error_ms"]["n"]]
    if empty:
        names = "; ".join(f"{r['scheduler']} at {r['bpm']:g} bpm {'with' if r['flood'] else 'without'} flood "
                          f"({r['answers']} answers, {r['notes_missing']} notes missing)" for r in empty)
        problems.append(f"no answer notes were measured in {len(empty)} run(s): {names}")
    for run in result.get("deadline_policy", {}).get("runs", []):
        problems += deadline_problems(run)
    for run in result.get("before_after", {}).get("runs", []):
        if not run["arrival_error_ms"]["n"]:
            problems.append(f"the {run['tree']} tree's run at {run['bpm']:g} bpm measured no answer notes")
    return problems


def main(argv: list[str] | None = None) -> dict:
    parser = benchmark_parser("bench-bridge", __doc__.split("\n")[0])
    parser.add_argument("--model", help="exported model directory (default: an untrained mel_2bar)")
    parser.add_argument("--bars", type=int, default=16, help="bars of clock per run")
    parser.add_argument("--bpm", type=float, nargs="+", default=[120.0, 180.0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, help="what to run (default: schedulers and deadline, "
                        "and baseline with --baseline-rev)")
    parser.add_argument("--slow-model", help="deadline part: an exported model too slow for the deadlines "
                        "(default: mel_2bar at Magenta's sizes, exported here)")
    parser.add_argument("--baseline-rev", help="baseline part: a git revision of this checkout to compare latency "
                        "with (e.g. 1134088, before the engine)")
    parser.add_argument("--baseline-pairs", type=int, default=2, help="baseline part: baseline/current run pairs per tempo")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (models, daemon logs, trees)")
    args = parser.parse_args(argv)
    parts = args.parts or [p for p in PARTS if p != "baseline" or args.baseline_rev]
    if "baseline" in parts and not args.baseline_rev:
        parser.error("--parts baseline needs --baseline-rev REV (e.g. 1134088)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    try:  # a baseline revision that cannot be used is said now, not after the other parts have run for an hour
        baseline = baseline_tree(args.baseline_rev, workdir) if "baseline" in parts else None
    except BenchError as error:
        shutil.rmtree(workdir, ignore_errors=True)
        sys.exit(f"bench_bridge: {error}")
    result = {
        "benchmark": "bridge", "parts": parts,
        "model": args.model or "mel_2bar (untrained, exported fp32 + int8: int8 served)",
        "jack": {"driver": "dummy", "rate": 48000, "period": 64, "period_ms": round(64 / 48, 3), "sync": True},
        "targets": {"send_error_p99_ms": 1.0, "generation_p99_ms": 3.0},
        "stopped_early": None, "teardown_failed": None,  # sentences when the rig failed part way
    }
    jack = None
    try:  # each part's runs go into `result` as they finish: whatever stops the benchmark, they are written
        model = args.model or (default_model(workdir) if {"schedulers", "baseline"} & set(parts) else None)
        slow, export_s = (args.slow_model, None) if args.slow_model or "deadline" not in parts else slow_model(workdir)
        jack = JackServer().start()
        os.environ.update(jack.client_env)  # this process's own clients (the peer, the floor)
        if "schedulers" in parts:
            result["runs"] = []
            scheduler_runs(jack, model, args.bpm, args.bars, workdir, result["runs"])
        if "deadline" in parts:
            result["deadline_policy"] = {
                "model": args.slow_model or f"mel_2bar at Magenta's sizes {MAGENTA_SIZES} (untrained, fp32)",
                "export_s": export_s, "runs": []}
            deadline_runs(jack, slow, args.bars, workdir, result["deadline_policy"]["runs"])
        if "baseline" in parts:
            sha, env = baseline
            result["before_after"] = {"baseline_rev": args.baseline_rev, "baseline_commit": sha,
                                      "current": _current_revision(), "scheduler": "precise",
                                      "pairs": args.baseline_pairs, "runs": []}
            baseline_runs(jack, model, env, args.bpm, args.bars, args.baseline_pairs, workdir,
                          result["before_after"]["runs"])
    except BenchError as error:
        result["stopped_early"] = f"stopped early: {error}"
    except RIG_ERRORS as error:
        result["stopped_early"] = f"stopped early: {describe(error)}"
    finally:  # also while an unexpected error goes up: the runs measured are written before its traceback
        result["teardown_failed"] = teardown(jack, workdir, args.keep)
        if "runs" in result:
            result["ratios_vs_naive_sleep"] = scheduler_ratios(result["runs"], args.bpm)
        if "before_after" in result:
            result["before_after"]["ratios"] = baseline_ratios(result["before_after"]["runs"], args.bpm)
        result["machine"] = {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
        emit(result, args.json_out)
    conclude("bench_bridge", result, failures(result),
             "Run again with --keep and read the daemon logs in the work directory.")
    return result


if __name__ == "__main__":
    main()
