"""`musicbridge serve`: the live bridge on the command line (no torch anywhere on this path)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from musicbridge import DEFAULT_MODEL
from musicbridge.bridge.config import (
    BPM_RANGE,
    CLOCK_TIMES,
    CLOCKS,
    ENDINGS,
    FALLBACKS,
    LINK_QUANTUM_RANGE,
    MODES,
    PARAM_RANGES,
    SCHEDULERS,
    Params,
    ServeConfig,
)
from musicbridge.midi_ports import API_CHOICES, API_HELP

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULTS = ServeConfig()  # the options' defaults are the config's own


def _param_option(name: str, help: str):
    """The option of a musical param: its default from Params, its range from config.PARAM_RANGES."""
    low, high = PARAM_RANGES[name]
    return typer.Option(getattr(DEFAULTS.params, name), min=low, max=high, help=help)


def _choice(value: str, choices: tuple[str, ...], option: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


def _scale(spec: str | None):
    from musicbridge.scales import ScaleError, parse_scale

    try:
        return parse_scale(spec)
    except ScaleError as error:
        raise typer.BadParameter(str(error), param_hint="--scale") from None


def _print_summary(console: Console, result: dict) -> None:
    from musicbridge.bridge.status import deadline_text

    table = Table(title="musicbridge serve — summary", show_header=True)
    for column in ("", "p50", "p99", "max", "n"):
        table.add_column(column, justify="right" if column else "left")
    for key, label in (("generation_latency_ms", "generation latency (ms)"), ("model_ms", "model calls (ms)"),
                       ("timing_error_ms", "output timing error (ms)")):
        row = result[key]
        table.add_row(label, *(str(row[k]) if row[k] is not None else "–" for k in ("p50", "p99", "max", "n")))
    console.print(table)
    console.print(", ".join(f"{k.replace('_', ' ')}: {result[k]}" for k in (
        "answers", "notes_sent", "late_dropped", "superseded", "stale", "midi_in", "osc_in", "osc_errors")))
    console.print(deadline_text(result))
    console.print(f"scale lock at exit: {result.get('scale') or 'off'}")
    if result.get("session_log"):
        logged = result["session_log"]
        lost = (f"; [red]{logged['dropped']} events dropped (the writer fell behind)[/red]" if logged["dropped"]
                else "") + (f"; [red]{logged['write_errors']} write errors[/red]" if logged["write_errors"] else "")
        console.print(f"session log: {logged['answers']} answers in {escape(logged['dir'])}{lost}")


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: list[str] = typer.Option([], "--model", "-m", help="Exported model directory or shipped model name "
                                        f"(repeatable; the first is active; default: the shipped {DEFAULT_MODEL})."),
        models_dir: list[Path] = typer.Option([], "--models-dir", help="Directory /musicbridge/model/load may load "
                                              "models from (repeatable; default: the folders of the --model paths)."),
        files_dir: list[Path] = typer.Option([], "--files-dir", help="Directory /musicbridge/capture/file may read "
                                             "MIDI files from (repeatable; default: the working directory)."),
        midi_api: str = typer.Option(DEFAULTS.midi_api, help=API_HELP),
        midi_in: str = typer.Option(None, help="Connect to this existing input port (substring) instead of the "
                                    "virtual port 'musicbridge in'."),
        midi_out: str = typer.Option(None, help="Connect to this existing output port (substring) instead of the "
                                     "virtual port 'musicbridge out'."),
        in_channel: int = typer.Option(0, min=0, max=16, help="Only listen to this MIDI channel (1-16, 0 = all)."),
        out_channel: int = typer.Option(0, min=0, max=16, help="Answer on this channel (1-16; 0 = 1 for melodies, "
                                        "10 for drums)."),
        thru: bool = typer.Option(False, "--thru/--no-thru", help="Pass the input through to the output."),
        startup_notes_off: bool = typer.Option(True, "--startup-notes-off/--no-startup-notes-off", help="At start, "
                                               "send all-notes-off on the output channels (every channel with "
                                               "--thru), so notes a killed predecessor left on end."),
        clock: str = typer.Option(DEFAULTS.clock, help="auto (MIDI clock when ticks arrive, else internal), internal, "
                                  "midi, osc (stopped until /musicbridge/transport/play) or link (Ableton Link: "
                                  "tempo, bar phase and start/stop shared with the session; needs the link extra)."),
        link_quantum: int = typer.Option(DEFAULTS.link_quantum, min=LINK_QUANTUM_RANGE[0], max=LINK_QUANTUM_RANGE[1],
                                         help="--clock link: bars whose phase is shared with the Link session "
                                         "(set it like Live's quantization; 1 = every bar line)."),
        bpm: float = typer.Option(DEFAULTS.bpm, min=BPM_RANGE[0], max=BPM_RANGE[1], help="Tempo of the internal clock."),
        output_offset_ms: float = typer.Option(0.0, help="Send output this much later (negative: earlier) to "
                                               "compensate latency."),
        osc_host: str = typer.Option(DEFAULTS.osc_host, help="Interface to listen on for OSC (0.0.0.0 = all: think first)."),
        osc_port: int = typer.Option(DEFAULTS.osc_port, min=0, max=65535, help="OSC port to listen on."),
        osc_reply_host: str = typer.Option(DEFAULTS.osc_reply_host, help="Host that replies always go to (other hosts get "
                                           "replies after /musicbridge/subscribe)."),
        osc_reply_port: int = typer.Option(DEFAULTS.osc_reply_port, min=1, max=65535, help="Port replies go to on --osc-reply-host "
                                           "(and the default port of a subscription)."),
        oscquery_host: str = typer.Option(DEFAULTS.oscquery_host, help="Interface the OSCQuery HTTP server listens on "
                                          "(and zeroconf advertises it on; 0.0.0.0 = all: think first)."),
        oscquery_port: int = typer.Option(None, min=0, max=65535, show_default=False, help="OSCQuery HTTP port "
                                          "(controllers read the OSC namespace there; advertised as _oscjson._tcp). "
                                          "Default 9002, or any free port when 9002 is taken; 0 = no OSCQuery."),
        mappings: Path = typer.Option(None, help="MIDI learn's mappings file (TOML): read at start, rewritten after "
                                      "each /musicbridge/learn or /musicbridge/learn/clear. Without it mappings last "
                                      "until the daemon stops."),
        mode: str = typer.Option(DEFAULTS.params.mode, help=f"Starting mode: {', '.join(MODES)}."),
        temperature: float = _param_option("temperature", "Sampling temperature (0 = greedy)."),
        bars: int = _param_option("bars", "Bars per answer."),
        novelty: float = _param_option("novelty", "Scale of sigma when z is drawn around mu."),
        variations: int = _param_option("variations", "Candidates per answer (picked by note density)."),
        silence: float = _param_option("silence", "call-response: beats of silence before answering."),
        steps: int = _param_option("steps", "interpolate: phrases on the path, A and B included."),
        ending: str = typer.Option(DEFAULTS.params.ending, help=f"interpolate: after B, {', '.join(ENDINGS)}."),
        fallback: str = typer.Option(DEFAULTS.params.fallback, help="What plays when an answer is not ready by "
                                     "its deadline: repeat (the last answer again) or hold (nothing new); a late "
                                     "answer still takes over from its next note, and no note is sent late."),
        scale: str = typer.Option(None, help="Scale lock: no answer leaves it. ROOT:MODE (D:dorian, A:minor, "
                                  "C:major_pentatonic, E:blues, …) or pitch classes (0,2,4,7,9 or C,D,E,G,A); "
                                  "/musicbridge/param/scale changes it live."),
        seed: int = typer.Option(None, help="Seed for reproducible answers."),
        log_session: Path = typer.Option(None, help="Log the session in this new folder: every answer with its "
                                         "input window, seed, z, params, model hash and timing (session.jsonl), and "
                                         "input and output on one timeline (session.mid). `musicbridge replay DIR` "
                                         "makes every answer again and checks it is the same."),
        index: Path = typer.Option(None, "--index", help="A library index made with the active model (musicbridge "
                                   "embed FILES -o FILE.npz): /musicbridge/similar answers with the library phrases "
                                   "nearest to what was just played, and mode similar plays the nearest one."),
        status: bool = typer.Option(True, "--status/--no-status", help="Show the live status line."),
        stats_json: Path = typer.Option(None, help="Also write the exit summary to this JSON file."),
        clock_time: str = typer.Option(DEFAULTS.clock_time, help="On JACK, the time a MIDI clock is followed in: "
                                       "frames (the server's: exact for a clock the JACK graph writes, a DAW or "
                                       "jack_midi_clock, even when cycles run late), wall (for a clock sent on "
                                       "wall-clock time) or auto (both fitted; the one its ticks are regular in)."),
        realtime: bool = typer.Option(True, "--realtime/--no-realtime", help="Run the daemon's threads with "
                                      "real-time priority (SCHED_FIFO) where the system allows it, below the MIDI "
                                      "system's own threads (ordinary on a JACK server that is not real-time)."),
        scheduler: str = typer.Option(DEFAULTS.scheduler, hidden=True, help="precise or sleep (the naive benchmark baseline)."),
        log_level: str = typer.Option("info", help=f"{', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}."),
    ) -> None:
        """Play live: MIDI/OSC in, clock-locked continuations, interpolations and samples out on a MIDI port."""
        console = Console(stderr=True)
        log_level = _choice(log_level.lower(), LOG_LEVELS, "--log-level")
        logging.basicConfig(level=log_level.upper(), format="%(message)s", datefmt="%X",
                            handlers=[RichHandler(console=console, show_path=False)])
        clock = _choice(clock, CLOCKS, "--clock")
        if clock == "link":
            from musicbridge.cli_errors import require_extra

            require_extra("aalink", "--clock link", Console(stderr=True, soft_wrap=True))  # one unbroken line
        from musicbridge.runtime import SHIPPED_DIR

        model = list(model) or [DEFAULT_MODEL]  # the shipped default: works offline out of the box
        dirs = list(models_dir) or sorted({Path(m).resolve().parent for m in model if Path(m).exists()})
        dirs.append(SHIPPED_DIR)  # shipped models can always be switched to by name
        config = ServeConfig(
            models=list(model), models_dirs=[str(d) for d in dirs],
            midi_api=_choice(midi_api, API_CHOICES, "--midi-api"), midi_in=midi_in, midi_out=midi_out,
            in_channel=in_channel, out_channel=out_channel, thru=thru, startup_notes_off=startup_notes_off,
            clock=clock, link_quantum=link_quantum,
            clock_time=_choice(clock_time, CLOCK_TIMES, "--clock-time"),
            bpm=bpm, output_offset_ms=output_offset_ms, scheduler=_choice(scheduler, SCHEDULERS, "--scheduler"),
            realtime=realtime,
            osc_host=osc_host, osc_port=osc_port, osc_reply_port=osc_reply_port, osc_reply_host=osc_reply_host,
            oscquery_host=oscquery_host, oscquery_port=oscquery_port,
            mappings=str(mappings) if mappings is not None else None,
            files_dirs=[str(d) for d in files_dir], seed=seed, status_line=status,
            log_session=str(log_session) if log_session is not None else None,
            index=str(index) if index is not None else None,
            params=Params(_choice(mode, MODES, "--mode"), temperature, bars, novelty, variations, silence, steps,
                          _choice(ending, ENDINGS, "--ending"), scale=_scale(scale),
                          fallback=_choice(fallback, FALLBACKS, "--fallback")),
        )
        from musicbridge.bridge.daemon import Bridge
        from musicbridge.bridge.midi_io import MidiError

        bridge = Bridge(config)
        try:
            bridge.open()
        except (MidiError, OSError, ValueError) as error:
            bridge.shutdown()
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:  # Ctrl-C while models load
            bridge.shutdown()
            raise typer.Exit(130) from None
        result = bridge.run(console=console)
        _print_summary(console, result)
        if stats_json:
            stats_json.write_text(json.dumps(result, indent=2))
