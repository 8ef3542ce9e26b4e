"""The live bridge: wires MIDI/OSC input, the clock, the engine, the generation worker and the scheduler.

One pass: note in → engine (capture buffer, in beats) → trigger at a bar's last 16th → worker encodes the last
bars and decodes the answer → engine (still current?) → a phrase in beats → scheduler → MIDI out (and
/musicbridge/gen/* over OSC).

Threads: the MIDI input poller and the OSC server (I/O), the engine (bridge/engine.py: the one owner of the
musical state; the others post it events, and it wakes for the bar lines itself), the scheduler (precise
output), the generation worker (model calls), the model-load worker (one load at a time, bridge/model_store.py),
the similar worker (/musicbridge/similar searches of the --index library, bridge/library.py)
and the main thread's housekeeping (port reconnection; a JACK server that goes away and comes back: the ports are
detached and re-created, the musical state stays).
Lock order, never reversed: scheduler lock → clock lock / output lock. The engine holds no lock: an OSC command
waits for the engine thread to run it (Engine.call), never the other way round.
Every way out — Stop, relocation, mode change, panic, SIGINT/SIGTERM, an exception — ends in scheduler.flush(),
which sends a note-off for every note still sounding; a model switch ends the old model's phrase on the bar line
where the new model starts (scheduler.cut()).
"""

from __future__ import annotations

import gc
import io
import logging
import os
import signal
import sys
import threading
import time

from musicbridge.bridge import midi_io, priority
from musicbridge.bridge.clock import Clock
from musicbridge.bridge.config import DEFAULT_SIMILAR_K, ServeConfig
from musicbridge.bridge.engine import AnswerReady, ControlIn, Engine, ModelReady, NoteIn, TransportChanged
from musicbridge.bridge.engine import Refused as EngineRefused
from musicbridge.bridge.generator import GenerationWorker, ModelRef, Phrase, Request
from musicbridge.bridge.jack_watch import JackWatch
from musicbridge.bridge.learn import Learn, control_of
from musicbridge.bridge.library import IndexRef, LibraryError, Query, QueryWorker, load_index
from musicbridge.bridge.link_clock import LinkClock
from musicbridge.bridge.model_store import LoadRequest, LoadWorker, ModelStore, RefusedPath, model_name
from musicbridge.bridge.osc import (
    LEARN_TARGETS,
    ROUTES,
    STATUS_PARAMS,
    OscInputError,
    OscServer,
    P,
    param_value,
)
from musicbridge.bridge.osc_packet import show
from musicbridge.bridge.oscquery import OscQueryServer
from musicbridge.bridge.paths import MAX_MIDI_FILE_BYTES, Refused, confine, read_regular_file, resolve_dirs
from musicbridge.bridge.scheduler import Scheduler
from musicbridge.bridge.session_log import SessionLog
from musicbridge.bridge.status import StatusLine, summary
from musicbridge.midi_ports import MidiUnavailableError
from musicbridge.phrases import FROM_START, PhraseError, file_tokens
from musicbridge.scales import ScaleError, parse_scale

log = logging.getLogger(__name__)


class Bridge:
    def __init__(self, config: ServeConfig, store: ModelStore | None = None):
        self.config = config
        self.stopping = threading.Event()
        self.store = store or ModelStore(config.models_dirs)
        self.loader = LoadWorker(self.store, self._on_model_loaded, self._on_model_failed, self._on_model_dropped)
        self.files_dirs = resolve_dirs(config.files_dirs or [os.getcwd()])  # where capture/file may read
        self.clock = LinkClock(config.bpm, config.link_quantum, on_event=self._on_clock) if config.clock == "link" \
            else Clock(config.clock, config.bpm, on_event=self._on_clock)
        self.output: midi_io.MidiOutput | None = None
        self.input: midi_io.MidiInput | None = None
        self.midi_description = ""  # what MIDI it serves, for the log: the ports, or why OSC only
        self.midi_in_count = 0
        self.midi_state = "off"  # "ok", "lost" (the MIDI system went away: waiting for it) or "off" (OSC only)
        self.midi_outages = 0
        self.watch: JackWatch | None = None  # tells when the JACK server goes away and comes back
        self.scheduler: Scheduler | None = None
        self.engine: Engine | None = None  # the musical state (made in open(), once the models are loaded)
        self.worker = GenerationWorker(self._on_phrase, self._on_generation_error)
        self.library: IndexRef | None = None  # --index (bridge/library.py), loaded in open()
        self.queries = QueryWorker(self._similar_found, self._similar_failed, self._similar_superseded)
        self.osc: OscServer | None = None
        self.oscquery: OscQueryServer | None = None  # the namespace over HTTP (bridge/oscquery.py)
        self.session_log: SessionLog | None = None  # --log-session (bridge/session_log.py)
        self.threads: list[threading.Thread] = []

    # ---- setup ----------------------------------------------------------------------------------
    def open(self) -> None:
        learn = Learn.open(LEARN_TARGETS, self.config.mappings)  # a bad mappings file stops here, before the models
        for index, spec in enumerate(self.config.models):
            self.store.add(spec, activate=index == 0)
        self.library = self._open_library()  # refused here, before any port opens
        self._open_midi()
        self.scheduler = Scheduler(self.clock, self.output, self.config.output_offset_ms, self.config.scheduler,
                                   self.config.realtime)
        active = self.store.active
        if self.config.log_session:  # a folder that holds a log already is refused here, before anything plays
            self.session_log = SessionLog(self.config.log_session)
        self.engine = Engine(self.config.params, self.clock, self.scheduler, self.worker.submit, self._channel_for,
                             ModelRef.of(self.store.active_name, active) if active is not None else None,
                             seed=self.config.seed, send_phrase=self._send_phrase, model_switched=self._model_switched,
                             learn=learn, dispatch=self._dispatch_control, learn_changed=self._learn_changed,
                             model_names=self._model_names,
                             observe=self.session_log.post if self.session_log is not None else lambda event: None,
                             index=self.library)
        self.osc = OscServer(self, self.config.osc_host, self.config.osc_port, self.config.osc_reply_port,
                             self.config.osc_reply_host)
        if self.config.oscquery_port != 0:
            self.oscquery = OscQueryServer(ROUTES, self.osc_values, self.config.oscquery_host,
                                           self.config.oscquery_port, self.osc.port, self.config.osc_host)

    def _open_library(self) -> IndexRef | None:
        """--index: the library index, made with the active model (a ValueError with the fix otherwise)."""
        if self.config.index is None:
            if self.config.params.mode == "similar":
                raise ValueError("--mode similar plays phrases from a library: give it with --index FILE.npz "
                                 "(made by musicbridge embed)")
            return None
        library = load_index(self.config.index)  # EmbeddingError (a ValueError) with the fix
        active = self.store.active
        refusal = library.refusal(active) if active is not None else None
        if refusal:
            raise ValueError(f"--index {self.config.index}: {refusal}")
        log.info("library %s: %d phrases of %d files", library.path, len(library.index), len(library.index.files))
        return library

    def _open_midi(self) -> None:
        cfg = self.config
        self.output, self.input, self.midi_description = midi_io.open_ports(
            cfg.midi_api, cfg.midi_in, cfg.midi_out, self._on_midi, cfg.realtime)
        if self.output is None:
            log.warning("%s", self.midi_description)
            return
        self.midi_state = "ok"
        if hasattr(self.clock, "set_midi_system"):  # on JACK, late ticks are the sender's slip (bridge/clock.py)
            self.clock.set_midi_system(self.output.api)
            # Where the input's events carry their frames (jack_midi.JackTimebase), a MIDI clock's ticks are fitted
            # in them and its answers placed on them, when the ticks are regular there (--clock-time).
            timebase = getattr(self.output, "timebase", None)
            if timebase is not None and cfg.clock_time == "auto":
                self.clock.offer_timebase(timebase)
            elif timebase is not None and cfg.clock_time == "frames":
                self.clock.set_timebase(timebase)
        if self.output.api == "jack":
            try:
                self.watch = JackWatch()
                self.output.set_cycle(self.watch.period_s())
            except OSError as error:  # the ports work; only a restart of the server would go unnoticed
                log.warning("cannot watch the JACK server (%s): a restart of it will not be noticed", error)
        if cfg.realtime:  # below the MIDI system's own threads, by what its server runs at (bridge/priority.py)
            priority.adopt(priority.plan_for(self.output.api, self.watch))

    def _close_midi(self) -> None:
        midi_io.close_ports(self.input, self.output)
        self.input = self.output = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def _output_channels(self) -> tuple[int, ...]:
        """Where this daemon may have played: its answer channel, and every channel when --thru passes input."""
        return tuple(range(16)) if self.config.thru else (self.out_channel(),)

    def _notes_off_everywhere(self, why: str) -> None:
        """All-notes-off on the output channels: at start (a killed predecessor may have left notes on) and when
        the MIDI system is back (a synth that lived through it may still hold what was playing)."""
        if self.output is not None:
            closed = self.output.all_notes_off(self._output_channels())
            log.debug("all notes off (%s): %d notes closed", why, closed)

    def out_channel(self) -> int:
        return self._channel_for(self.engine.view.model if self.engine is not None else None)

    def _channel_for(self, model: ModelRef | None) -> int:
        """The answer channel: --out-channel, else by representation (melody 1, drums 10)."""
        if self.config.out_channel:
            return self.config.out_channel - 1
        return 9 if model is not None and model.codec.name == "drums" else 0

    # ---- running --------------------------------------------------------------------------------
    def run(self, install_signals: bool = True, console=None) -> dict:
        """Serve until SIGINT/SIGTERM (or stop()); returns the exit summary."""
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stopping.set())
        previous_hook = threading.excepthook
        threading.excepthook = self._thread_crashed
        status = StatusLine(self, console) if self.config.status_line else None
        sys.setswitchinterval(0.00025)  # the spinning scheduler must get the GIL back quickly
        gc.freeze()  # what startup made lives on: full collections skip it (measured 230 ms with it, ~0 after)
        if self.config.realtime:  # threads started from here on inherit it (see bridge/priority.py)
            priority.become_realtime(priority.IO_AND_WORK, "main")
        try:
            self.start()
            if status:
                status.start()
            while not self.stopping.wait(0.5):
                self._housekeeping()
        finally:
            if status:
                status.stop()
            self.shutdown()
            threading.excepthook = previous_hook
        result = summary(self)
        if self.session_log is not None:
            result["session_log"] = self.session_log.summary()
        return result

    def start(self) -> None:
        if self.session_log is not None:  # its thread, like the others, inherits the real-time priority
            self.session_log.start(self.engine.seed, bpm=self.config.bpm, clock=self.config.clock,
                                   models=self.config.models, params=self.config.params,
                                   index=None if self.library is None else {"path": self.library.path,
                                                                             "sha256": self.library.sha256})
            log.info("session log in %s", self.session_log.folder)
        self.scheduler.start()
        self.engine.start()
        self.worker.start()
        self.queries.start()
        self.loader.start()
        self.osc.start()
        if self.oscquery is not None:
            self.oscquery.start()
            log.info("OSCQuery on %s", self.oscquery.url)
        self.clock.start_internal(time.perf_counter())
        if self.config.startup_notes_off:
            self._notes_off_everywhere("startup")
        log.info("serving: %s; OSC on %s:%d (replies to %s:%d and subscribers)", self.midi_description,
                 self.config.osc_host, self.osc.port, self.config.osc_reply_host, self.config.osc_reply_port)

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop every thread and leave nothing sounding (runs on every exit path)."""
        self.stopping.set()
        try:
            if self.input is not None:
                self.input.stop()
                self.midi_in_count = self.input.received
                self.midi_in_ignored = self.input.ignored
            if self.engine is not None:
                self.engine.stop()  # the scheduler is the engine's: it stops first
            self.worker.stop()
            self.queries.stop()
            self.loader.stop()
            if self.scheduler is not None:
                self.scheduler.stop()
                self.scheduler.flush((self.out_channel(),))
            if self.output is not None:
                time.sleep(0.05)  # let the MIDI system deliver the note-offs before the port goes
        finally:
            if self.session_log is not None:
                self.session_log.close()  # what is queued, then session.mid
            if self.osc is not None:
                self.osc.close()
            if self.oscquery is not None:
                self.oscquery.close()
            for thread in self.threads:
                thread.join(timeout=2)
            self._close_midi()
            if isinstance(self.clock, LinkClock):
                self.clock.close()  # leave the Link session: its peers drop this one at once

    def _thread_crashed(self, args) -> None:
        log.error("thread %s crashed: %s", args.thread.name if args.thread else "?", args.exc_value,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        self.stopping.set()  # the finally in run() turns everything off

    def _housekeeping(self) -> None:
        """Every 0.5 s on the main thread: the MIDI system's presence (a flag test while it is there), then
        named ports that may have come back. No lock a note-on needs is held while looking."""
        if hasattr(self.clock, "check_input"):
            self.clock.check_input(time.perf_counter())  # a MIDI clock gone silent is reported (_on_clock)
        event = self.watch.poll() if self.watch is not None else None
        if event == "lost":
            self._midi_lost()
        elif event == "back":
            self._midi_back()
        if self.midi_state != "ok":
            return
        for port in (self.output, self.input):
            if port is not None:
                try:
                    port.check()
                except Exception:
                    log.exception("checking MIDI port")

    def _midi_lost(self) -> None:
        """The JACK server stopped or was killed: the ports go dead, everything else plays on (the clock, the
        modes, the model); answers are still sent over OSC."""
        self.midi_state = "lost"
        self.midi_outages += 1
        for port in (self.input, self.output):
            port.detach()
        reason = f" ({self.watch.reason})" if self.watch.reason else ""
        message = (f"the JACK server went away{reason}: MIDI is off until it is back (the ports are re-created "
                   "then, by themselves; OSC goes on)")
        log.warning("%s", message)
        if self.osc is not None:
            self.osc.replier.send(f"{P}/error", "midi_lost", message)  # to every target: nobody asked
            self.osc_status()

    def _midi_back(self) -> None:
        """The JACK server is back: new clients for both ports (named ports reconnect when they appear)."""
        started = time.perf_counter()
        self.watch.pause()  # no other client of ours open while the ports' clients are made (bridge/jack_watch.py)
        try:
            for port in (self.output, self.input):
                port.reattach()
        except (midi_io.MidiError, MidiUnavailableError) as error:
            log.debug("the JACK server answers but the ports cannot be made yet (%s); trying again", error)
            for port in (self.output, self.input):
                port.detach()
            return  # the watch stays closed: the next poll probes again
        if not self.watch.resume():  # it went away again meanwhile
            for port in (self.output, self.input):
                port.detach()
            return
        self.output.set_cycle(self.watch.period_s())
        if self.config.realtime:  # the new server may run at other priorities
            priority.adopt(priority.plan_for("jack", self.watch))
        self.midi_state = "ok"
        log.warning("the JACK server is back: MIDI ports re-created in %.0f ms (in %r, out %r)",
                    (time.perf_counter() - started) * 1000, self.input.port.name, self.output.port.name)
        self._notes_off_everywhere("MIDI back")
        if self.osc is not None:
            self.osc_status()

    # ---- time -----------------------------------------------------------------------------------
    def _on_clock(self, kind: str, beat: float) -> None:
        if kind in ("input_silent", "input_back"):  # the MIDI clock stopped coming while it ran, or is back
            if self.osc is not None:
                if kind == "input_silent":
                    self.osc.replier.send(f"{P}/error", "clock_silent", self.clock.input_report)  # to every target
                self.osc_status()
            return
        if self.engine is not None:
            self.engine.post(TransportChanged(kind, beat))

    # ---- answers --------------------------------------------------------------------------------
    def _on_phrase(self, phrase: Phrase) -> None:
        self.engine.post(AnswerReady(phrase))  # the engine decides whether it is still current

    def _send_phrase(self, phrase_id: int, notes, n_bars: int, start_beat: float) -> None:
        send = self.osc.replier.send
        send(f"{P}/gen/begin", phrase_id, n_bars, start_beat)
        for note in notes:
            send(f"{P}/gen/note", phrase_id, note.pitch, note.velocity, note.start, note.end - note.start)
        send(f"{P}/gen/end", phrase_id, len(notes))

    def _on_generation_error(self, request: Request, error: Exception) -> None:
        if self.osc is not None:
            if isinstance(error, LibraryError):  # mode similar found nothing it may play: said as a sentence
                self.osc.replier.error("not_ready", f"similar: {error}", None)
            else:
                self.osc.replier.error("internal", f"generation failed: {error}", None)

    # ---- input ----------------------------------------------------------------------------------
    def _on_midi(self, message: list[int], t: float) -> None:
        if not message or self.clock.handle_midi(message, t):
            return
        status = message[0] & 0xF0
        channel = message[0] & 0x0F
        if self.config.in_channel and channel != self.config.in_channel - 1:
            return
        if self._to_learn(message, t):
            return  # MIDI learn's: never captured, never passed through
        if status in (0x80, 0x90) and len(message) >= 3:
            self._note(channel, message[1], message[2] if status == 0x90 else 0, t)
        if self.config.thru and self.output is not None and midi_io.well_formed(message):
            self.output.send(message)  # a complete channel message; truncated ones (a broken sender) are dropped

    def _to_learn(self, message: list[int], t: float) -> bool:
        """Post a CC or note that MIDI learn wants to the engine: a bound control's, or while learning any CC or
        note-on (a note-off passes: its note-on may have sounded). True when it did. The view can be a moment
        behind the engine: what learn turns out not to want, the engine takes as an ordinary note."""
        engine = self.engine
        found = control_of(message) if engine is not None and midi_io.well_formed(message) else None
        if found is None:
            return False
        control, value = found
        view = engine.view
        if control not in view.learned and not (view.learning and (control.kind == "cc" or value > 0)):
            return False
        playing, beat, _ = self.clock.state(t)
        engine.post(ControlIn(t, beat if playing else None, control, value))
        return True

    def _note(self, channel: int, pitch: int, velocity: int, t: float) -> None:
        playing, beat, _ = self.clock.state(t)
        if not playing or self.engine is None:
            return  # no musical time to put it at
        self.engine.post(NoteIn(t, beat, channel, pitch, velocity))

    # ---- OSC handlers (arguments already checked against osc.ROUTES) ----------------------------
    def osc_note(self, pitch: int, velocity: int, channel: int = 1, host: str | None = None) -> None:
        self._on_midi([0x90 | (channel - 1), pitch, velocity], time.perf_counter())  # exactly like MIDI input

    def osc_tempo(self, bpm: float, host=None) -> None:
        self.clock.set_tempo(bpm, time.perf_counter())

    def osc_play(self, host=None) -> None:
        self.clock.play(time.perf_counter())

    def osc_stop(self, host=None) -> None:
        self.clock.stop(time.perf_counter())

    def osc_position(self, beats: float, host=None) -> None:
        self.clock.set_position(beats, time.perf_counter())

    def _call(self, fn, *args):
        """Run an engine command on its thread; what it refuses becomes the OSC error reply."""
        try:
            return self.engine.call(fn, *args)
        except EngineRefused as refused:
            raise OscInputError(refused.code, str(refused)) from None

    def osc_mode(self, name: str, host=None) -> None:
        self._call(self.engine.set_mode, name)

    def _set(self, name: str, value) -> None:
        self._call(self.engine.set_param, name, value)

    def osc_temperature(self, x: float, host=None) -> None:
        self._set("temperature", x)

    def osc_bars(self, n: int, host=None) -> None:
        self._set("bars", n)

    def osc_novelty(self, x: float, host=None) -> None:
        self._set("novelty", x)

    def osc_variations(self, n: int, host=None) -> None:
        self._set("variations", n)

    def osc_silence(self, beats: float, host=None) -> None:
        self._set("silence", beats)

    def osc_steps(self, n: int, host=None) -> None:
        self._set("steps", n)

    def osc_ending(self, name: str, host=None) -> None:
        self._set("ending", name)

    def osc_fallback(self, name: str, host=None) -> None:
        self._set("fallback", name)

    # The attribute knobs (osc.attribute_route; config.ATTRIBUTE_PARAMS).
    def osc_attr_density(self, alpha: float, host=None) -> None:
        self._set("attr_density", alpha)

    def osc_attr_register(self, alpha: float, host=None) -> None:
        self._set("attr_register", alpha)

    def osc_attr_range(self, alpha: float, host=None) -> None:
        self._set("attr_range", alpha)

    def osc_attr_stepwise(self, alpha: float, host=None) -> None:
        self._set("attr_stepwise", alpha)

    def osc_scale(self, spec: str, host=None) -> None:
        try:
            scale = parse_scale(spec)  # "off" / "" → None: unlocked
        except ScaleError as error:
            raise OscInputError("out_of_range", str(error)) from None
        self._set("scale", scale)  # the device sends its scale again on every reconnect: a no-op then

    def osc_capture(self, slot: str, host=None) -> None:
        self._call(self.engine.capture_slot, slot)

    def osc_capture_file(self, slot: str, path: str, host=None) -> None:
        import mido

        from musicbridge.notes import NoteSequence

        model = self._require_model()  # the file is read for the model active now; the engine checks it still is
        # One refusal for every path it cannot use (outside, missing, a FIFO or device, too big): a sender
        # learns nothing about what exists. The read never blocks (bridge/paths.py).
        refusal = f"{show(path)} is not a MIDI file in the files directories (--files-dir)"
        try:
            data = read_regular_file(confine(path, self.files_dirs, refusal), MAX_MIDI_FILE_BYTES, refusal)
        except Refused as error:
            raise OscInputError("refused", str(error)) from None
        try:  # clip=True, as notes.py reads files: sloppy data bytes are clipped, not fatal
            sequence = NoteSequence.from_midi(mido.MidiFile(file=io.BytesIO(data), clip=True))
        except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError):
            raise OscInputError("load_failed", f"{show(path)} is not a readable MIDI file") from None
        try:
            tokens = file_tokens(sequence, model.codec, model.bars, FROM_START)  # a slot: the file's opening
        except PhraseError as error:
            raise OscInputError("load_failed", f"{show(path)}: {error}") from None
        self._call(self.engine.store_slot, slot, tokens, model)

    def _require_model(self) -> ModelRef:
        model = self.engine.view.model
        if model is None:
            raise OscInputError("not_ready", "no model loaded (start with --model or send /musicbridge/model/load)")
        return model

    def osc_generate(self, host=None) -> None:
        self._call(self.engine.generate)

    def osc_variation(self, index: int, host=None) -> None:
        tokens, start_beat, n_bars, codec = self._call(self.engine.candidate, index)
        notes = codec.decode(tokens)

        def send() -> None:  # the packet's one answer: a bundle of 1,000 requests sends one phrase, not 1,000
            self._send_phrase(self.engine.phrase_ids.next(), notes, n_bars, start_beat)

        self.osc.replier.answer(send)

    def osc_similar(self, k: int = DEFAULT_SIMILAR_K, host=None) -> None:
        tokens, model, library = self._call(self.engine.similar_input)
        query = Query(tokens, model.model, library, k, host)
        # The packet's one answer (bridge/replies.py): of a bundle of queries the last is searched, and none when
        # a message of it failed. The search runs on the similar worker; its replies go to the sender.
        self.osc.replier.answer(lambda: self.queries.submit(query))

    def _similar_found(self, query: Query, matches: list) -> None:
        send = self.osc.replier.send
        for rank, match in enumerate(matches, 1):
            send(f"{P}/similar/match", rank, match.file, match.bar, match.distance, match.voice, host=query.client)
        send(f"{P}/similar/end", len(matches), host=query.client)

    def _similar_failed(self, query: Query, error: Exception) -> None:
        code = "not_ready" if isinstance(error, LibraryError) else "internal"
        self.osc.replier.error(code, f"{P}/similar: {error}", query.client)

    def _similar_superseded(self, query: Query) -> None:
        self.osc.replier.error("not_ready", f"{P}/similar: a newer query replaced this one before it ran",
                               query.client)

    def osc_panic(self, host=None) -> None:
        self._call(self.engine.panic)
        if self.output is not None:
            self.output.panic()

    def osc_model_load(self, name_or_path: str, host=None) -> None:
        try:
            resolved = self.store.resolve(name_or_path)  # refuse early, on the OSC thread
        except RefusedPath as error:
            raise OscInputError("refused", str(error)) from None
        self.loader.submit(LoadRequest(name_or_path, resolved, host))  # one worker; a newer request wins

    def _on_model_dropped(self, request: LoadRequest) -> None:
        self.osc.replier.error("load_failed", f"model/load {show(request.text)} was superseded by a newer request "
                                              "before it started", request.requester)

    def _on_model_failed(self, request: LoadRequest, message: str) -> None:
        self.osc.replier.error("load_failed", f"{message} (the previous model stays active)", request.requester)

    def _on_model_loaded(self, request: LoadRequest, before, after) -> None:
        if self.library is not None:
            self.library.refusal(after)  # its encoder hashed here, on the load worker: the engine reads the memo
        # One ordered event: the engine switches at the next bar line and then calls _model_switched.
        self.engine.post(ModelReady(request.seq, ModelRef.of(request.resolved.name, after), request.requester))

    def _model_switched(self, requester) -> None:
        if self.osc is not None:
            self.osc_status(host=requester)

    # ---- MIDI learn (bridge/learn.py; the engine owns the table) ---------------------------------
    def osc_learn(self, target: str, host=None) -> None:
        self._call(self.engine.learn_arm, target)
        self._send_mappings(host)  # the confirmation: `learning` names the target

    def osc_learn_list(self, host=None) -> None:
        self._send_mappings(host)

    def osc_learn_clear(self, target: str | None = None, host=None) -> None:
        self._call(self.engine.learn_clear, target)
        self._send_mappings(host)

    def _send_mappings(self, host=None) -> None:
        """One /musicbridge/learn/mapping per mapping, then /musicbridge/learn/end: the reply to `host`'s request,
        or to every target (None: a mapping was learned from MIDI, or learning timed out)."""
        view = self.engine.view
        replier = self.osc.replier

        def send() -> None:
            for target, control in view.mappings:
                replier.send(f"{P}/learn/mapping", target, control.kind, control.channel + 1, control.number,
                             host=host)
            replier.send(f"{P}/learn/end", len(view.mappings), view.learning, host=host)

        if host is None:
            send()
        else:
            replier.answer(send)  # the request packet's one reply, sent whole when the packet is done

    def _learn_changed(self, error: str | None) -> None:
        """From the engine thread: a control was learned (or learning timed out)."""
        if self.osc is None:
            return
        if error:
            self.osc.replier.error("internal", error, None)
        self._send_mappings()

    def _dispatch_control(self, address: str, args: tuple) -> None:
        """A learned control's message (on the engine thread): checked and handled exactly as over OSC."""
        route = self.osc.routes[address]
        try:
            getattr(self, route.handler)(*route.parse(args), host=None)
        except OscInputError as error:
            self.osc.replier.error(error.code, f"{address} (MIDI learn): {error}", None)

    def _model_names(self) -> tuple[str, ...]:
        """What the `model` learn target picks among: the --model models, in their order."""
        return tuple(model_name(spec) for spec in self.config.models)

    def osc_values(self) -> dict[str, list]:
        """OSCQuery's VALUEs (address -> one item per argument): every route that sets a param, from the engine's
        view; the clock's tempo and position; the active model."""
        view = self.engine.view
        _, beat, bpm = self.clock.state(time.perf_counter())
        values = {route.address: [param_value(view.params, route.param)] for route in ROUTES if route.param}
        values[f"{P}/transport/tempo"] = [float(bpm)]
        values[f"{P}/transport/position"] = [max(0.0, float(beat))]
        if view.model is not None:
            values[f"{P}/model/load"] = [view.model.name]
        return values

    def osc_subscribe(self, port: int | None = None, seconds: float | None = None, host=None) -> None:
        subscription = self.osc.subscribe(host, port, seconds)
        if subscription is not None:
            self.osc_status(to=subscription)  # the confirmation, where the subscriber listens

    def osc_status(self, host=None, to=None) -> None:
        playing, _, bpm = self.clock.state(time.perf_counter())
        view = self.engine.view
        self.osc.replier.send(f"{P}/status", view.params.mode, bpm, int(playing),
                              view.model.name if view.model is not None else "", view.last_latency_ms,
                              self._midi_status(), *self._status_params(view), host=host, to=to)

    def _midi_status(self) -> str:
        """The status reply's `midi`: the MIDI system's state, or "silent" while a running clock is not heard."""
        return "silent" if self.midi_state == "ok" and getattr(self.clock, "input_silent", False) else self.midi_state

    @staticmethod
    def _status_params(view) -> list:
        """The values of osc.STATUS_PARAMS, from one snapshot of the engine's state."""
        return [view.slots if name == "slots" else param_value(view.params, name) for name in STATUS_PARAMS]
