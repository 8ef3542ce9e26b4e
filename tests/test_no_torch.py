"""The serve path never imports torch: the runtime and every bridge module, imported and used in a fresh process.

`python -X importtime` (plus sys.modules at the end) lists what a process imports, so a lazy or indirect import of
torch anywhere under these modules shows up — including bridge modules added after this test was written.
"""

import pkgutil
import subprocess
import sys

import pytest

import musicbridge.bridge


def bridge_modules() -> list[str]:
    found = pkgutil.walk_packages(musicbridge.bridge.__path__, prefix="musicbridge.bridge.")
    return sorted(m.name for m in found if not m.name.rsplit(".", 1)[1].startswith("_"))


def imported_modules(code: str) -> set[str]:
    """Modules a fresh interpreter imports running `code`: those `-X importtime` reports, plus sys.modules at
    the end (importtime leaves out some imports made through importlib inside a module's body)."""
    code += "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    names = set(result.stdout.split())
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "encodings" in names and "musicbridge" in names, "no module list came back"
    return names


def test_bridge_has_modules_to_check():
    assert len(bridge_modules()) >= 1


def test_runtime_and_bridge_modules_import_without_torch():
    modules = ["musicbridge.runtime", *bridge_modules()]
    names = imported_modules(f"import {', '.join(modules)}")
    assert "musicbridge.runtime" in names
    torch_like = sorted(n for n in names if n.split(".")[0] in ("torch", "torchvision", "torchaudio"))
    assert not torch_like, f"torch imported by the serve path: {torch_like[:5]}"


def test_the_cli_imports_without_torch():
    """Every stage's commands.py imports torch inside its command bodies only, so `musicbridge serve` and
    `--help` never load it."""
    names = imported_modules("import musicbridge.cli")
    assert "musicbridge.export.commands" in names and "musicbridge.benchmarks.commands" in names
    assert not any(n.split(".")[0] == "torch" for n in names)


@pytest.mark.timeout(300)
def test_loading_and_running_a_model_imports_neither_torch_nor_onnx(tmp_path):
    from musicbridge.export.testing import export_tiny

    model_dir = export_tiny(tmp_path / "tiny", variants=("int8",))
    code = (
        "import sys, musicbridge.runtime as r\n"
        f"m = r.load_model({str(model_dir)!r})\n"
        "m.continue_(m.sample_prior(2, seed=0)[0], variations=2, seed=1); m.interpolate([0] * 32, [2] * 32, 3)\n"
        "m.teacher_forced_logits([0] * 32, m.encode([0] * 32)[0])\n"
    )
    names = imported_modules(code)
    assert "onnxruntime" in names
    assert not any(n.split(".")[0] in ("torch", "onnx") for n in names)
