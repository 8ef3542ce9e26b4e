"""The models the daemon can play: those given with --model, and others loaded later from the models directories.

OSC may switch to a loaded model by name, or load a model folder that lies inside a configured models directory
with every file in it too (symlinks and `..` resolved: bridge/paths.py); anything else gets one uniform refusal.
Loads run on one worker thread, one at a time: a newer request replaces a pending one, and at most MAX_LOADED
models stay loaded (least recently used evicted, never the active one), so a burst of requests costs neither
threads nor memory. A failed load leaves the active model as it was.

The store's `active` is the model chosen last (the LRU never evicts it); the model that plays is the engine's
(bridge/engine.py), which takes a finished load as an event and switches at the next bar line. Each load request
is numbered when it is submitted, so the engine always ends on the model requested last.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from musicbridge.bridge import priority
from musicbridge.bridge.mailbox import NewestWins
from musicbridge.bridge.osc_packet import show
from musicbridge.bridge.paths import Refused, confine, folder_confined, resolve_dirs
from musicbridge.runtime import ModelLoadError

log = logging.getLogger(__name__)

MAX_LOADED = 3  # the active model and the two used before it: switching back among them costs no load


class RefusedPath(Refused):
    """A model name or path that is not a loaded model nor a model folder inside the models directories."""


def _load(spec: str):
    from musicbridge.runtime import load_model  # torch-free

    try:
        return load_model(spec)
    except Exception as error:  # onnxruntime may raise its own types; the caller needs one
        raise ModelLoadError(f"cannot load model {spec!r}: {error}") from error


def refusal(text: str) -> str:
    """The one message for every model/load that cannot be used, whatever the reason."""
    return f"{show(text)} is not a loaded model nor a model folder in the models directories (--models-dir)"


def model_name(spec: str) -> str:
    return os.path.basename(os.path.realpath(spec)) if os.path.exists(spec) else spec


@dataclass(frozen=True)
class Resolved:
    key: str  # the model folder's real path (a loaded model's key)
    name: str  # what status replies and messages show
    path: str | None  # the folder to load; None when the model is loaded already


@dataclass
class _Entry:
    name: str
    model: object


class ModelStore:
    def __init__(self, models_dirs: list[str], loader=_load, capacity: int = MAX_LOADED):
        self.dirs = resolve_dirs(models_dirs)
        self.loader = loader
        self.capacity = capacity
        self.models: OrderedDict[str, _Entry] = OrderedDict()  # key -> entry, least recently used first
        self.active_key: str | None = None
        self.loads = 0  # models read from disk (the LRU keeps this down)
        self.lock = threading.Lock()

    @property
    def active(self):
        with self.lock:
            entry = self.models.get(self.active_key) if self.active_key else None
            return entry.model if entry else None

    @property
    def active_name(self) -> str | None:
        with self.lock:
            entry = self.models.get(self.active_key) if self.active_key else None
            return entry.name if entry else None

    def add(self, spec: str, activate: bool = False) -> str:
        """Load a model named on the command line (trusted: any path or shipped name)."""
        model = self.loader(spec)
        path = getattr(model, "path", None)
        key = os.path.realpath(path) if path is not None else spec
        name = model_name(spec)
        self._insert(key, name, model, activate=activate or self.active_key is None)
        return name

    def _insert(self, key: str, name: str, model, activate: bool) -> None:
        with self.lock:
            self.loads += 1
            self.models[key] = _Entry(name, model)
            self.models.move_to_end(key)
            if activate:
                self.active_key = key
            while len(self.models) > self.capacity:  # the least recently used one that is not active goes
                victim = next((k for k in self.models if k != self.active_key), None)
                if victim is None:
                    break
                log.info("model %s unloaded (at most %d stay loaded)", self.models.pop(victim).name, self.capacity)

    def resolve(self, name_or_path: str) -> Resolved:
        """A loaded model (by name or path) or a model folder to load; RefusedPath for anything else, the same
        message whatever the reason (missing, outside, a symlink out, not a model folder, too long)."""
        refused = refusal(name_or_path)
        with self.lock:
            for key in reversed(self.models):  # the most recently used of that name
                if self.models[key].name == name_or_path:
                    return Resolved(key, name_or_path, None)
        try:
            real = confine(name_or_path, self.dirs, refused)
        except Refused:
            raise RefusedPath(refused) from None
        with self.lock:
            if real in self.models:
                return Resolved(real, self.models[real].name, None)
        usable = (os.path.isdir(real) and os.path.isfile(os.path.join(real, "model.json"))
                  and folder_confined(real, self.dirs))
        if not usable:
            raise RefusedPath(refused)
        return Resolved(real, os.path.basename(real), real)

    def switch(self, target: Resolved | str) -> str:
        """Activate a loaded model, or load one from a models directory (slow: call off the I/O threads)."""
        resolved = target if isinstance(target, Resolved) else self.resolve(target)
        if resolved.path is not None:
            if not folder_confined(resolved.path, self.dirs):  # checked again: a link may have been swapped in
                raise RefusedPath(refusal(resolved.name))
            log.info("loading model %s", resolved.name)
            try:
                model = self.loader(resolved.path)  # raises on a bad model: the old one stays active
            except Exception as error:
                raise ModelLoadError(self.scrub(str(error), resolved)) from None
            self._insert(resolved.key, resolved.name, model, activate=True)
        else:
            with self.lock:
                if resolved.key not in self.models:  # evicted since it was resolved
                    raise ModelLoadError(f"{resolved.name} was unloaded meanwhile; load it again")
                self.models.move_to_end(resolved.key)
                self.active_key = resolved.key
        log.info("model %s active", resolved.name)
        return resolved.name

    def scrub(self, message: str, resolved: Resolved) -> str:
        """A load error without absolute paths: the folder becomes its name, a models directory `<models dir>`."""
        message = message.replace(resolved.key, resolved.name)
        for directory in self.dirs:
            message = message.replace(directory, "<models dir>")
        return message


@dataclass
class LoadRequest:
    text: str  # as the sender wrote it
    resolved: Resolved
    requester: object = None  # the client address replies go to
    seq: int = 0  # numbered by LoadWorker.submit: a higher number was requested later


class LoadWorker:
    """Loads models on one thread; one request waits at most: a newer one replaces it (newest wins)."""

    def __init__(self, store: ModelStore, on_loaded: Callable[[LoadRequest, object, object], None],
                 on_failed: Callable[[LoadRequest, str], None], on_dropped: Callable[[LoadRequest], None]):
        self.store = store
        self.on_loaded, self.on_failed, self.on_dropped = on_loaded, on_failed, on_dropped
        self.mailbox: NewestWins[LoadRequest] = NewestWins()
        self.dropped = 0
        self.numbers = itertools.count(1)
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.mailbox.reopen()
        self.thread = threading.Thread(target=self._run, name="model-load", daemon=True)
        self.thread.start()

    def submit(self, request: LoadRequest) -> None:
        request.seq = next(self.numbers)  # submit is called from one thread (OSC): numbers follow its order
        dropped = self.mailbox.put(request)
        if dropped is not None:
            self.dropped += 1
            self.on_dropped(dropped)

    def stop(self) -> None:
        self.mailbox.close()
        # Not joined: a load in progress finishes on its own (a daemon thread); shutdown must not wait for it.

    def _run(self) -> None:
        priority.become_normal()  # a second of loading must not crowd the real-time threads
        while (request := self.mailbox.take()) is not None:
            before = self.store.active
            try:
                self.store.switch(request.resolved)  # onnxruntime session + warm-up; the clock keeps running
            except Exception as error:
                log.warning("model load %s failed: %s", show(request.text), error)
                self.on_failed(request, str(error))
                continue
            self.on_loaded(request, before, self.store.active)
