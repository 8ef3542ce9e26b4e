"""The one-line live status (rich) and the exit summary."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.text import Text

from musicbridge.codecs import BEATS_PER_BAR


def percentiles(values, scale: float = 1.0) -> dict:
    """{"p50", "p99", "max", "n"} of values × scale (None when there are none)."""
    data = np.asarray(list(values), dtype=np.float64) * scale
    if data.size == 0:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    return {"p50": round(float(np.percentile(data, 50)), 4), "p99": round(float(np.percentile(data, 99)), 4),
            "max": round(float(data.max()), 4), "n": int(data.size)}


def summary(bridge) -> dict:
    scheduler = bridge.scheduler
    engine = bridge.engine
    counts = engine.counts if engine else {}
    params = engine.view.params if engine else bridge.config.params
    errors = list(scheduler.errors) if scheduler else []
    return {
        "generation_latency_ms": percentiles(bridge.worker.latencies_ms),
        "model_ms": percentiles(bridge.worker.model_ms),
        "timing_error_ms": percentiles(np.abs(errors), 1000.0),  # |note-on sent − due|
        "timing_error_signed_mean_ms": round(float(np.mean(errors)) * 1000, 4) if errors else None,
        "notes_sent": scheduler.sent if scheduler else 0,
        "late_dropped": scheduler.late_dropped if scheduler else 0,
        "answers": counts.get("answers", 0),
        "superseded": bridge.worker.superseded,
        "stale": counts.get("stale", 0),  # answers requested before a flush (stop, relocation, mode change, …)
        "stale_model": counts.get("stale_model", 0),  # answers from a model that was switched away from
        "overtaken": counts.get("overtaken", 0),  # answers that came after a newer one was played
        "deadline_missed": counts.get("deadline_missed", 0),  # answers not ready by their deadline: fallback
        "late_answers": counts.get("late_answers", 0),  # of those, answers that came later and took over
        "fallbacks": counts.get("fallbacks", 0),  # fallback phrases played (`repeat`; `hold` plays none)
        "fallback": params.fallback,  # at exit
        "generation_failed": bridge.worker.failed,
        "midi_in": bridge.input.received if bridge.input else bridge.midi_in_count,
        "osc_in": bridge.osc.handled if bridge.osc else 0,
        "osc_errors": bridge.osc.replier.errors if bridge.osc else 0,
        "lost_clock_ticks": bridge.clock.ticks.lost_ticks if hasattr(bridge.clock, "ticks") else 0,
        "clock_silences": getattr(bridge.clock, "silences", 0),  # times a running MIDI clock stopped coming
        # the time a MIDI clock was followed in at exit (wall or frames: serve --clock-time) and the times it changed
        "clock_time": bridge.clock.timebase_name() if hasattr(bridge.clock, "timebase_name") else None,
        "clock_time_switches": getattr(bridge.clock, "timebase_switches", 0),
        "clock_misses_ms": bridge.clock.timebase_misses() if hasattr(bridge.clock, "timebase_misses") else None,
        "midi_in_ignored": bridge.input.ignored if bridge.input else getattr(bridge, "midi_in_ignored", 0),
        "link": bridge.clock.link_status() if hasattr(bridge.clock, "link_status") else None,  # --clock link
        "midi_outages": bridge.midi_outages,  # times the MIDI system (JACK server) went away
        "scheduler": {"mode": scheduler.mode, "realtime": scheduler.realtime} if scheduler else None,
        "scale": params.scale.spec if params.scale is not None else None,  # at exit
    }


def deadline_text(result: dict) -> str:
    """The exit summary's deadline line, from summary()'s dict."""
    return (f"deadline missed {result['deadline_missed']}, late answers {result['late_answers']}, "
            f"fallbacks {result['fallbacks']} ({result['fallback']})")


def status_text(bridge) -> Text:
    playing, beat, bpm = bridge.clock.state(time.perf_counter())
    bar, in_bar = divmod(beat, BEATS_PER_BAR)
    scheduler = bridge.scheduler
    view = bridge.engine.view
    params = view.params
    latency = f"{view.last_latency_ms:.1f} ms" if view.last_latency_ms >= 0 else "–"
    parts = [
        ("▶ " if playing else "■ ", "green" if playing else "red"),
        (f"{params.mode}", "bold"),
        (f" │ {bpm:6.1f} bpm │ {int(bar) + 1}:{int(math.floor(in_bar)) + 1}", ""),
        (f" │ {view.model.name if view.model is not None else 'no model'}", "cyan"),
        (f" │ scale {params.scale.name if params.scale is not None else 'off'}", "magenta"),
        (f" │ gen {latency}", ""),
        (f" │ missed {bridge.engine.counts['deadline_missed']} ({params.fallback})", ""),
        (f" │ late {scheduler.late_dropped if scheduler else 0}", ""),
        (f" │ superseded {bridge.worker.superseded}", ""),
    ]
    if hasattr(bridge.clock, "link_status"):  # --clock link: who shares the session
        parts.append((f" │ Link {bridge.clock.link_status()['peers']} peer(s)", "cyan"))
    if bridge.midi_state == "lost":
        parts.append((" │ MIDI lost: waiting for the JACK server", "bold red"))
    elif getattr(bridge.clock, "input_silent", False):
        parts.append((" │ MIDI clock silent", "bold red"))
    return Text.assemble(*parts)


class StatusLine:
    """Redraws the status line four times a second on a terminal; silent otherwise (logs still go out)."""

    def __init__(self, bridge, console: Console | None = None):
        self.bridge = bridge
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.console.is_terminal:
            return
        self.live = Live(status_text(self.bridge), console=self.console, auto_refresh=False, transient=True)
        self.live.start()
        self.thread = threading.Thread(target=self._run, name="status", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.25):
            self.live.update(status_text(self.bridge), refresh=True)

    def stop(self) -> None:
        self.done.set()
        if self.thread:
            self.thread.join(timeout=1)
        if self.live:
            self.live.stop()
