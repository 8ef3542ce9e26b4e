"""Timing of `musicbridge serve` through a real JACK server, played by a separate client process (this one).

For each scheduler (the precise one with real-time priority, the same at normal priority, and the naive
time.sleep baseline at normal priority, all in the same run), tempo (120, 180 bpm)
and input (quiet, or a flood of ~9000 MIDI messages a second from another process):
- this process plays MIDI clock and a melody into "musicbridge in" (continue mode answers every bar) and records
  "musicbridge out" with JACK's own arrival timestamps;
- the flood never changes the phrase: controllers, aftertouch and channel pressure on the melody's channel, and
  notes on channel 16, which the daemon is told to ignore (--in-channel 1) — the answers stay the same, so what
  the flood changes is timing alone;
- output timing error = arrival of each answer note − the clock's time of its beat (the beat is known from the
  /musicbridge/gen/* replies); the JACK floor is the same measure for the clock's own ticks looped back
  (what the MIDI system alone adds: a period of 64 frames is 1.33 ms);
- from the daemon's --stats-json: generation latency (trigger → phrase ready), the scheduler's send error
  (MIDI handed to the port − due time) and late-dropped notes; answers on the next bar = answers that started
  on the bar line right after the bar that triggered them, with none of their notes dropped.

    python -m musicbridge.benchmarks.bench_bridge [--model DIR] [--bars 8] [--json-out FILE]
    musicbridge bench-bridge …   (the same)

Without --model, an untrained mel_2bar model is exported first (the latency of a trained one is the same).
A run that measured no answer notes fails the benchmark (exit 1): its figures would mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from musicbridge.benchmarks.jack_rig import ClockPlayer, JackServer, MidiPeer, Recorder
from musicbridge.bridge.clock import TICKS_PER_BEAT
from musicbridge.codecs import BEATS_PER_BAR

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


def play(peer: MidiPeer, bpm: float, bars: int) -> tuple[float, list[float]]:
    """MIDI clock from the peer (Start just before the first tick), a melody note on every beat, Stop at the
    end; returns the first tick's time and every tick's intended time."""
    beats = bars * BEATS_PER_BAR
    player = ClockPlayer(peer, bpm)
    player.add_notes((beat, beat + 1, MELODY[beat % len(MELODY)], 90) for beat in range(beats))
    t0 = player.start(beats + 1 / TICKS_PER_BEAT, delay=0.2)  # up to the tick on the last bar line, included
    player.join(timeout=beats * 60.0 / bpm + 10)
    peer.send([0xFC])
    return t0, [player.tick_times[tick] for tick in sorted(player.tick_times)]


VARIANTS = {  # name: serve options
    "precise": ["--scheduler", "precise", "--realtime"],
    "precise-normal-priority": ["--scheduler", "precise", "--no-realtime"],
    "sleep": ["--scheduler", "sleep", "--no-realtime"],  # the naive baseline: time.sleep until due, then send
}


def run_once(jack: JackServer, model: str, scheduler: str, bpm: float, flood: bool, bars: int, workdir: Path) -> dict:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    osc_port, reply_port = free_port(), free_port()
    stats = workdir / f"stats-{scheduler}-{bpm:g}-{int(flood)}.json"
    log = open(workdir / f"serve-{scheduler}-{bpm:g}-{int(flood)}.log", "w")  # noqa: SIM115
    daemon = subprocess.Popen(
        [sys.executable, "-m", "musicbridge", "serve", "--midi-api", "jack", "--clock", "midi", "--model", model,
         "--seed", "1", "--in-channel", IN_CHANNEL, *VARIANTS[scheduler], "--stats-json", str(stats), "--no-status", "--log-level", "warning",
         "--osc-port", str(osc_port), "--osc-reply-port", str(reply_port)],
        env=jack.env, stdout=log, stderr=subprocess.STDOUT)
    gen: list[tuple[str, tuple]] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: gen.append((address, args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", reply_port), dispatcher)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    peer, floor = MidiPeer("bench"), Recorder("bench-floor")  # the clock and the answers; the clock looped back
    flooder = None
    try:
        peer.connect(jack)
        jack.connect("bench:to-bridge", "bench-floor:in")
        if flood:
            flooder = subprocess.Popen([sys.executable, "-c", FLOOD], env=jack.env, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
            flooder.stdout.readline()
            jack.connect("flood:out", "musicbridge in")
            flooder.stdin.write("go\n")
            flooder.stdin.flush()
        time.sleep(0.5)  # the first message after a new connection can be lost
        t0, tick_times = play(peer, bpm, bars)
        time.sleep(0.3)
    finally:
        if flooder is not None:
            flooder.terminate()
            flooder.wait(10)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()
        peer.close()
        floor.close()
        server.shutdown()
        server.server_close()
    spb = 60.0 / bpm
    phrases: dict[int, dict] = {}
    for address, args in gen:
        entry = phrases.setdefault(args[0], {"notes": []})
        if address.endswith("/begin"):
            entry["start"] = args[2]
        elif address.endswith("/note"):
            entry["notes"].append(args)
    ordered = sorted((p for p in phrases.values() if "start" in p), key=lambda p: p["start"])
    ons = [(t, pitch) for t, kind, _, pitch, _ in peer.notes() if kind == "on"]
    errors, missing = [], 0
    end_beat = bars * BEATS_PER_BAR
    for i, phrase in enumerate(ordered):
        cut = min(ordered[i + 1]["start"] if i + 1 < len(ordered) else end_beat, end_beat)
        for _, pitch, _, rel, _ in phrase["notes"]:
            beat = phrase["start"] + rel
            if beat >= cut:
                continue
            intended = t0 + beat * spb
            near = [t for t, p in ons if p == pitch and abs(t - intended) < 0.05]
            if near:
                errors.append((min(near, key=lambda t: abs(t - intended)) - intended) * 1000)
            else:
                missing += 1
    ticks = [t for t, m in floor.events() if m == [0xF8]]
    floor_ms = [(a - b) * 1000 for a, b in zip(ticks, tick_times, strict=False)] if len(ticks) == len(tick_times) else []
    daemon_stats = json.loads(stats.read_text())
    starts = [p["start"] for p in ordered]
    on_next_bar = sum(1 for k, s in enumerate(starts) if s == BEATS_PER_BAR * (k + 1))  # bar k+1 answers bar k
    errors_arr = np.asarray(errors)
    return {
        "scheduler": scheduler, "bpm": bpm, "flood": flood, "bars": bars,
        "generation_latency_ms": daemon_stats["generation_latency_ms"],
        "send_error_ms": daemon_stats["timing_error_ms"],
        "arrival_error_ms": percentiles(np.abs(errors_arr)),
        "arrival_error_signed_median_ms": round(float(np.median(errors_arr)), 3) if errors else None,
        "arrival_jitter_ms": percentiles(np.abs(errors_arr - np.median(errors_arr))) if errors else percentiles([]),
        "jack_floor_ms": percentiles(np.abs(floor_ms)),
        "answers": len(starts), "answers_on_next_bar": on_next_bar, "expected_answers": bars,
        "late_dropped": daemon_stats["late_dropped"], "notes_missing": missing,
        "midi_in": daemon_stats["midi_in"], "scheduler_realtime": daemon_stats["scheduler"]["realtime"],
        "phrases": [[p["start"], *sorted((n[1], n[3]) for n in p["notes"])] for p in ordered],  # what was answered
    }


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="exported model directory (default: an untrained mel_2bar)")
    parser.add_argument("--bars", type=int, default=16, help="bars of clock per run")
    parser.add_argument("--bpm", type=float, nargs="+", default=[120.0, 180.0])
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (model, daemon logs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    model = args.model or default_model(workdir)
    jack = JackServer().start()
    os.environ.update(jack.client_env)  # this process's own clients (the peer, the floor)
    runs = []
    try:
        for bpm in args.bpm:
            for flood in (False, True):
                for scheduler in VARIANTS:
                    runs.append(run_once(jack, model, scheduler, bpm, flood, args.bars, workdir))
                    print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        jack.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for run in runs:  # the flood must not change what is answered, only (perhaps) when
        if run["flood"]:
            quiet = next(r for r in runs if not r["flood"] and r["bpm"] == run["bpm"] and r["scheduler"] == run["scheduler"])
            run["same_phrases_as_without_flood"] = run["phrases"] == quiet["phrases"]
    for run in runs:
        del run["phrases"]  # compared; "answers" counts them
    ratios = []
    for bpm in args.bpm:
        for flood in (False, True):
            pick = {r["scheduler"]: r for r in runs if r["bpm"] == bpm and r["flood"] == flood}
            entry = {"bpm": bpm, "flood": flood}
            for key in ("send_error_ms", "arrival_error_ms", "arrival_jitter_ms"):
                base = pick["sleep"][key]["p99"]
                for variant in ("precise", "precise-normal-priority"):
                    ours = pick[variant][key]["p99"]
                    entry[f"{key}_p99_sleep_over_{variant}"] = round(base / ours, 2) if base and ours else None
            ratios.append(entry)
    result = {
        "benchmark": "bridge", "model": args.model or "mel_2bar (untrained, exported fp32 + int8: int8 served)", "jack": {"driver": "dummy", "rate": 48000, "period": 64,
                                                        "period_ms": round(64 / 48, 3), "sync": True},
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "targets": {"send_error_p99_ms": 1.0, "generation_p99_ms": 3.0},
        "runs": runs, "ratios_vs_naive_sleep": ratios,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text)
    empty = [r for r in runs if not r["arrival_error_ms"]["n"]]
    if empty:
        names = "; ".join(f"{r['scheduler']} at {r['bpm']:g} bpm {'with' if r['flood'] else 'without'} flood "
                          f"({r['answers']} answers, {r['notes_missing']} notes missing)" for r in empty)
        sys.exit(f"bench_bridge: FAILED — no answer notes were measured in {len(empty)} run(s): {names}. Their "
                 "figures mean nothing; run again with --keep and read the daemon logs for why.")
    return result


if __name__ == "__main__":
    main()
