"""Copy one variant of an exported model into the package's shipped models (maintainers' tool).

    python -m musicbridge.export.ship exported/mel_2bar core/shipped/mel_2bar --variant int8

Only the chosen variant's graphs travel (the package stays a few MB), with the model's fitted prior (prior.npz)
and attribute vectors (attributes.npz) where it has them; model.json is rewritten to list just them, and the copy is loaded back through the runtime
before the command says it is done.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from musicbridge.attributes import ATTRIBUTES_FILE
from musicbridge.latent_prior import PRIOR_FILE
from musicbridge.runtime import CONTINUATION_DIR, load_model


def ship(exported: Path, target: Path, variant: str) -> Path:
    _copy_variant(exported, target, variant)
    follower = exported / CONTINUATION_DIR
    if (follower / "model.json").is_file():  # the continuation sub-model travels with its model
        _copy_variant(follower, target / CONTINUATION_DIR, variant)
    elif (target / CONTINUATION_DIR).exists():
        shutil.rmtree(target / CONTINUATION_DIR)
    load_model(target)  # refuses a broken copy
    return target


def _copy_variant(exported: Path, target: Path, variant: str) -> None:
    metadata = json.loads((exported / "model.json").read_text())
    if variant not in metadata["variants"]:
        raise SystemExit(f"{exported} has no {variant} variant; it has {', '.join(metadata['variants'])}")
    files = metadata["variants"][variant]
    # The fitted prior and the attribute vectors are the same for every variant: they travel with whichever is shipped.
    prior = [metadata[key]["file"] for key in ("prior", "attributes") if isinstance(metadata.get(key), dict)]
    target.mkdir(parents=True, exist_ok=True)
    for stale in [*target.glob("*.onnx"), target / PRIOR_FILE, target / ATTRIBUTES_FILE]:
        stale.unlink(missing_ok=True)
    for name in [*files.values(), *prior]:
        shutil.copy2(exported / name, target / name)
    metadata["variants"] = {variant: files}
    metadata["default_variant"] = variant
    kept = {*files.values(), *prior}
    metadata["sha256"] = {name: digest for name, digest in metadata["sha256"].items() if name in kept}
    (target / "model.json").write_text(json.dumps(metadata, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exported", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--variant", default="int8", choices=("fp32", "int8", "fp16"))
    args = parser.parse_args()
    print(ship(args.exported, args.target, args.variant))


if __name__ == "__main__":
    main()
