"""`musicbridge serve` as users start it: the command line, without torch on its import path."""

from __future__ import annotations

import os
import subprocess
import sys


def test_serve_command_does_not_import_torch():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "musicbridge", "serve", "--help"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--midi-api" in result.stdout and "--output-offset-ms" in result.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    chain = [name for name in imported if name.split(".")[0] == "torch"]
    culprits = sorted(n for n in imported if n.startswith("musicbridge."))
    assert not chain, f"`musicbridge serve` imports torch (musicbridge modules imported: {culprits})"
