"""Whether the JACK server is there: told by JACK itself when it goes, probed cheaply until it is back.

rtmidi cannot tell: after jackd stops or is killed its clients still "send" into their ring buffers and list
the old ports. So the daemon keeps one port-less JACK client of its own (invisible in patchbays, which show
ports) whose shutdown callback JACK calls the moment the server connection drops, SIGKILL included. While the
server is up, poll() costs one flag test; while it is down, one jack_client_open attempt (a few ms, no server
to register with) per call, the caller's housekeeping pace.

libjack is the very library, loaded once, that the MIDI ports use: the one JACK-Client loaded for JACK's own
MIDI clients (bridge/jack_midi.py), or, where JACK MIDI goes through python-rtmidi, the copy its wheel bundles,
else the system's. Its own messages ("Cannot connect to server socket", … several per probe)
are dropped, not printed: a JACK outage must not flood the daemon's log. They are dropped by a C function
(strlen: it reads the message and returns), never by a Python callback: JACK calls its error function from
its own threads, a Python callback there waits for the GIL, and python-rtmidi holds the GIL while it waits for
JACK (opening or closing a client) — measured: the daemon and the server deadlocked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from pathlib import Path

import rtmidi

log = logging.getLogger(__name__)

JACK_NO_START_SERVER = 0x01  # jack_options_t: never launch a server of our own
WATCH_CLIENT_NAME = "musicbridge watch"

_ShutdownCallback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_MessageFunction = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


def _library_path() -> str | None:
    """The libjack the MIDI ports use: JACK-Client's, else the one python-rtmidi was built against (bundled in
    its wheel), else the system's."""
    from musicbridge.bridge import jack_midi

    native = jack_midi.library_path()
    if native is not None:
        return native
    package = Path(rtmidi.__file__).resolve().parent
    for folder in (package, *package.parent.glob("python_rtmidi*")):
        found = sorted(folder.glob("libjack*.so*")) if folder.is_dir() else []
        if found:
            return str(found[0])
    return ctypes.util.find_library("jack")


_LIBRARY: ctypes.CDLL | None = None


def _ignore_messages() -> _MessageFunction:
    """A C function taking the message and doing nothing with it (see the module's note)."""
    return _MessageFunction(ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p).value)


def _library() -> ctypes.CDLL | None:
    global _LIBRARY
    if _LIBRARY is None:
        path = _library_path()
        if path is None:
            return None
        try:
            lib = ctypes.CDLL(path)
        except OSError as error:
            log.debug("no libjack to watch the server with (%s)", error)
            return None
        lib.jack_client_open.restype = ctypes.c_void_p
        lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        lib.jack_on_info_shutdown.argtypes = [ctypes.c_void_p, _ShutdownCallback, ctypes.c_void_p]
        lib.jack_client_close.argtypes = [ctypes.c_void_p]
        lib.jack_get_buffer_size.argtypes = [ctypes.c_void_p]
        lib.jack_get_buffer_size.restype = ctypes.c_uint32
        lib.jack_get_sample_rate.argtypes = [ctypes.c_void_p]
        lib.jack_get_sample_rate.restype = ctypes.c_uint32
        lib.jack_set_error_function.argtypes = [_MessageFunction]
        lib.jack_set_info_function.argtypes = [_MessageFunction]
        ignore = _ignore_messages()
        lib.jack_set_error_function(ignore)
        lib.jack_set_info_function(ignore)
        _LIBRARY = lib
    return _LIBRARY


class JackWatch:
    """poll() → "lost" once when the server went away, "back" once when a new one has answered for a whole
    poll interval (its own startup, and the clients that reconnect at once, come and go first), else None.

    Re-creating the ports runs between pause() and resume(), with no client of this process open but the one
    being made: libjack keeps one table of the server's clients per process, and a client of ours that learns
    late that another client left (a jack_lsp, a patchbay probe) clears the table entry that a client we open
    at that moment was just given — that client then never runs (seen with the watch open: the server hung).

    Not thread-safe: one thread (the daemon's housekeeping) calls it; JACK's own thread only sets a flag.
    """

    def __init__(self):
        self.lib = _library()
        if self.lib is None:
            raise OSError("libjack cannot be loaded")
        self.client: int | None = None
        self.gone = threading.Event()
        self.settled = True  # False from a probe's first success until the next poll
        self.reason = ""
        self._on_shutdown = _ShutdownCallback(self._shutdown)  # referenced while the client lives
        if not self._open():
            raise OSError("the JACK server does not answer")

    def _shutdown(self, code: int, reason: bytes | None, _arg) -> None:
        """Runs on the watch client's own JACK thread: record it and return at once. (Python here is safe: no
        MIDI port waits for this client, and ctypes releases the GIL in every libjack call made from here.)"""
        self.reason = (reason or b"").decode(errors="replace")
        self.gone.set()

    def _open(self) -> bool:
        status = ctypes.c_int(0)
        client = self.lib.jack_client_open(WATCH_CLIENT_NAME.encode(), JACK_NO_START_SERVER, ctypes.byref(status))
        if not client:
            return False
        self.gone.clear()
        self.lib.jack_on_info_shutdown(client, self._on_shutdown, None)
        self.client = client
        return True

    def _close(self) -> None:
        if self.client is not None:
            self.lib.jack_client_close(self.client)
            self.client = None

    @property
    def up(self) -> bool:
        return self.client is not None and not self.gone.is_set()

    def poll(self) -> str | None:
        if self.client is None:  # away: probe
            if self._open():
                self.settled = False
            return None
        if self.gone.is_set():
            self._close()
            return "lost" if self.settled else None  # a server that died while settling was never "back"
        if not self.settled:
            self.settled = True
            return "back"
        return None

    def pause(self) -> None:
        """Close the watch client while the ports' clients are made (see the class note)."""
        self._close()

    def resume(self) -> bool:
        """Open it again; False when the server went away meanwhile (the next poll probes for it)."""
        self.settled = self._open()
        return self.settled

    def period_s(self) -> float | None:
        """One JACK process cycle in seconds (buffer size / sample rate), None while the server is away."""
        if not self.up:
            return None
        rate = self.lib.jack_get_sample_rate(self.client)
        return self.lib.jack_get_buffer_size(self.client) / rate if rate else None

    def close(self) -> None:
        self._close()
