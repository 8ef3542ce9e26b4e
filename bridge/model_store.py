"""The models the daemon can play: those given with --model, and others loaded later from the models directories.

OSC may only switch to a loaded model or load a directory inside a configured models directory (symlinks
resolved), never an arbitrary path. A failed load leaves the active model as it was.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class RefusedPath(ValueError):
    """A model path outside the configured models directories."""


class ModelLoadError(ValueError):
    """A model that cannot be loaded (missing, corrupt, unknown representation version, ...)."""


def _load(spec: str):
    from musicbridge.runtime import load_model  # torch-free; imported late to keep `--help` fast

    try:
        return load_model(spec)
    except Exception as error:  # onnxruntime raises its own types; the caller needs one
        raise ModelLoadError(f"cannot load model {spec!r}: {error}") from error


def model_name(spec: str) -> str:
    path = Path(spec)
    return path.resolve().name if path.exists() else spec


class ModelStore:
    def __init__(self, models_dirs: list[str], loader=_load):
        self.dirs = [Path(d).resolve() for d in models_dirs]
        self.loader = loader
        self.models: dict[str, object] = {}
        self.active_name: str | None = None
        self.lock = threading.Lock()

    @property
    def active(self):
        with self.lock:
            return self.models.get(self.active_name) if self.active_name else None

    def add(self, spec: str, activate: bool = False) -> str:
        """Load a model named on the command line (trusted: any path or shipped name)."""
        model = self.loader(spec)
        name = model_name(spec)
        with self.lock:
            self.models[name] = model
            if activate or self.active_name is None:
                self.active_name = name
        return name

    def resolve(self, name_or_path: str) -> tuple[str, Path | None]:
        """(name, None) for a loaded model, or (name, path) of a directory to load; RefusedPath / LookupError."""
        with self.lock:
            if name_or_path in self.models:
                return name_or_path, None
        candidate = Path(name_or_path).expanduser()
        if not candidate.is_absolute() and len(candidate.parts) == 1:  # a bare name: look in the models dirs
            for directory in self.dirs:
                if (directory / candidate).exists():
                    return candidate.name, (directory / candidate).resolve()
            raise LookupError(f"no loaded model and no model directory called {name_or_path!r} in "
                              f"{', '.join(map(str, self.dirs)) or '(no --models-dir configured)'}")
        path = candidate.resolve()
        if not any(path == d or d in path.parents for d in self.dirs):
            raise RefusedPath(f"{name_or_path!r} is outside the models directories "
                              f"({', '.join(map(str, self.dirs)) or 'none configured: pass --models-dir'})")
        if not path.exists():
            raise LookupError(f"no model at {path}")
        return path.name, path

    def switch(self, name_or_path: str) -> str:
        """Activate a loaded model, or load one from a models directory (slow: call off the I/O threads)."""
        name, path = self.resolve(name_or_path)
        if path is not None:
            model = self.loader(os.fspath(path))  # raises on a bad model: the old one stays active
            with self.lock:
                self.models[name] = model
        with self.lock:
            self.active_name = name
        log.info("model %s active", name)
        return name
