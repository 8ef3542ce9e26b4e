"""Write an exported model directory: the ONNX graphs of each variant plus model.json.

    OUT_DIR/model.json              metadata (docs/architecture.md) + the graph files of each variant + sha256
    OUT_DIR/{encoder,sampler,teacher_forced}.onnx          fp32 (always written; the reference)
    OUT_DIR/{...}.int8.onnx / {...}.fp16.onnx              optional variants

Every graph carries the same metadata in its metadata_props (plus its role and variant), so a lone .onnx
file still says what it is. Files are written atomically, model.json last.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import onnx

import musicbridge
from musicbridge.codecs import codec_from_description, get_codec
from musicbridge.export import transformer
from musicbridge.export.graph import Graph, make_model
from musicbridge.export.musicvae import encoder_graph, sampler_graph, teacher_forced_graph, weights_of
from musicbridge.models.architectures import config_to_dict
from musicbridge.models.musicvae import PARALLEL_TEMPERATURE_SCALE, check_rule, first_note_on
from musicbridge.models.presets import check_lookback

FORMAT = 1
DEFAULT_OPSET = 17
OPSETS = range(17, 22)  # what the graphs are written and tested for
VARIANTS = ("fp32", "int8", "fp16")
GRAPHS = {"encoder": encoder_graph, "sampler": sampler_graph, "teacher_forced": teacher_forced_graph}
# model.json "kind" of each architecture the exporter writes (the names exports have always carried). A vsae's
# encoder and decoder are a flat MusicVAE's (models/vsae.py): it is written by the MusicVAE graph writers.
KINDS = {"musicvae": "musicvae", "transformer": "transformer_vae", "vsae": "vsae"}
# Keys of model.json that also go into every graph's metadata_props (JSON-encoded values).
GRAPH_KEYS = ("format", "kind", "representation", "bars", "steps_per_bar", "steps", "vocab_size", "z_size",
              "hierarchical", "preset", "dataset_hash", "musicbridge_version", "exported_at", "opset",
              "decoding_rule", "lookback", "architecture", "segment_bars")


def export_model(model, out_dir: str | os.PathLike, *, preset: str, representation: dict | None = None,
                 dataset_hash: str | None = None, checkpoint_step: int | None = None, opset: int = DEFAULT_OPSET,
                 variants=("fp32",), default_variant: str | None = None, decoding: str = "cached",
                 task: str = "reconstruct", rule: str = "argmax") -> dict:
    """Export a torch model (MusicVAE, Transformer VAE or vsae) to `out_dir`; returns the metadata written to
    model.json (its "architecture" names the model's, "config" holds its config, models/architectures.py).

    `representation` is the checkpoint's {"name", "version", ...} (default: this musicbridge's codec of the
    model's representation); `variants` adds int8 / fp16 graphs beside the fp32 ones; `default_variant` (default:
    int8 when exported, else fp32) is what `load_model` picks when not told; `decoding` picks a Transformer
    VAE's sampler: "cached" keys/values or "recompute" every step (export/transformer.py); `task` is what the
    model was trained for (the checkpoint's train.task): "reconstruct" (a VAE) or "continue" (its z codes the
    phrase that follows the encoded one — the runtime uses such a model as another's continuation/); `rule` is
    how the sampler picks each token (musicbridge.models.musicvae.DECODING_RULES: "argmax", or "event_first"
    for a melody MusicVAE — what `musicbridge export` gives continuation models), recorded as "decoding_rule".
    A lookback model (config.lookback, task "continue" only) gets the sampler and teacher_forced input `lookback`
    (export/musicvae.py), recorded as "lookback": true."""
    if opset not in OPSETS:
        raise ValueError(f"opset {opset} is not supported; use {OPSETS.start}–{OPSETS.stop - 1}")
    variants = ["fp32"] + [v for v in variants if v != "fp32"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    # int8 when asked for (it is what a CPU serves fastest); fp16 is for GPUs, so never the default by itself.
    default_variant = default_variant or ("int8" if "int8" in variants else "fp32")
    if default_variant not in variants:
        raise ValueError(f"default variant {default_variant!r} is not among the exported ones ({', '.join(variants)})")
    architecture = model.config.architecture
    if architecture not in KINDS:
        raise ValueError(f"exporting the {architecture!r} architecture is not supported; musicbridge export writes "
                         f"{', '.join(KINDS)} models")
    is_transformer = architecture == "transformer"
    # What the graph writers read: a vsae's sizes as the flat MusicVAE its encoder and decoder are.
    config = dataclasses.asdict(model.config.autoencoder() if architecture == "vsae" else model.config)
    check_rule(rule)
    check_lookback(model.config, task)
    if rule != "argmax":
        if is_transformer:
            raise ValueError(f"the Transformer VAE exporter writes argmax decoding only, not {rule!r}; export it "
                             f"with rule='argmax'")
        first_note_on(config["representation"])  # a clear error for a representation without note-ons
    graphs = GRAPHS | {"sampler": partial(sampler_graph, rule=rule)}
    if is_transformer:  # the same roles, inputs and outputs: the runtime drives both kinds unchanged
        if decoding not in transformer.DECODINGS:
            raise ValueError(f"unknown decoding {decoding!r}; choose one of {', '.join(transformer.DECODINGS)}")
        graphs = transformer.GRAPHS | {"sampler": partial(transformer.sampler_graph, decoding=decoding)}
    codec = codec_from_description(representation or get_codec(config["representation"]).describe())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT, "kind": KINDS[architecture], "architecture": architecture,
        "representation": codec.describe(),
        "bars": config["bars"], "steps_per_bar": config["steps_per_bar"],
        "steps": config["bars"] * config["steps_per_bar"], "vocab_size": config["vocab_size"],
        "z_size": config["z_size"], "hierarchical": bool(config.get("hierarchical", False)), "preset": preset,
        # The bars each decoder restart writes, hierarchical (models/musicvae.py); what runtime decoder_inputs cuts by.
        "segment_bars": int(config.get("segment_bars", 1)),
        "config": config_to_dict(model.config),
        "dataset_hash": dataset_hash, "checkpoint_step": checkpoint_step, "task": task, "decoding_rule": rule,
        "lookback": bool(config.get("lookback", False)),
        "musicbridge_version": musicbridge.__version__,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "opset": opset,
        "default_variant": default_variant, "variants": {}, "sha256": {},
    }
    if is_transformer:
        metadata["decoding"] = decoding
    if config.get("decoder_type") == "parallel":  # what temperature means for its sampler (runtime.Model.sample)
        metadata["temperature_scale"] = PARALLEL_TEMPERATURE_SCALE
    weights = weights_of(model)
    for role, build in graphs.items():
        graph = Graph(role)
        build(graph, weights, config)
        fp32 = make_model(graph, opset, graph_props(metadata, role, "fp32"), doc=f"musicbridge {role}")
        for variant in variants:
            onnx_model = fp32 if variant == "fp32" else convert(fp32, variant)
            onnx_model.metadata_props.clear()
            onnx.helper.set_model_props(onnx_model, graph_props(metadata, role, variant))
            onnx.checker.check_model(onnx_model)
            name = f"{role}.onnx" if variant == "fp32" else f"{role}.{variant}.onnx"
            data = onnx_model.SerializeToString()
            _write_atomic(out / name, data)
            metadata["variants"].setdefault(variant, {})[role] = name
            metadata["sha256"][name] = hashlib.sha256(data).hexdigest()
    write_metadata(out, metadata)
    return metadata


def graph_props(metadata: dict, role: str, variant: str) -> dict[str, str]:
    props = {f"musicbridge.{key}": json.dumps(metadata[key]) for key in GRAPH_KEYS}
    props.update({"musicbridge.role": json.dumps(role), "musicbridge.variant": json.dumps(variant)})
    return props


def write_metadata(out: Path, metadata: dict) -> None:
    _write_atomic(out / "model.json", (json.dumps(metadata, indent=2) + "\n").encode())


def add_file(out: Path, metadata: dict, name: str, data: bytes) -> None:
    """Write one more file of the model directory (a fitted prior, export/prior.py) atomically and record its
    sha256 beside the graphs', which the runtime checks at load; the caller writes model.json after."""
    _write_atomic(out / name, data)
    metadata["sha256"][name] = hashlib.sha256(data).hexdigest()


def convert(fp32: onnx.ModelProto, variant: str) -> onnx.ModelProto:
    """int8: onnxruntime dynamic quantisation (weights int8, activations quantised per call) of every MatMul,
    Gemm and LSTM; fp16: weights and compute in float16, inputs/outputs kept float32 (meant for GPUs — on a CPU
    onnxruntime runs it through casts, slower than fp32)."""
    if variant == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        fp16 = convert_float_to_float16(fp32, keep_io_types=True, disable_shape_infer=True)
        _sort_nodes(fp16.graph)  # the converter appends its input casts after their readers
        return fp16
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
        onnx.save(fp32, source)
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs advice about image models at WARNING
        try:
            # Per-tensor scales: on a trained mel_2bar as accurate as per-channel (docs/export.md) and faster.
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=False,
                             op_types_to_quantize=["MatMul", "Gemm", "LSTM"],
                             extra_options={"EnableSubgraph": True})
        finally:
            logging.getLogger().setLevel(quiet)
        quantized = onnx.load(target)
        _sort_nodes(quantized.graph)  # the quantiser may move a node a Loop body reads after the Loop
        return quantized


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order the nodes topologically (stable), as the ONNX checker requires."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        # Names a node reads from its subgraphs' outer scope count too: they must exist before it runs.
        runnable = [n for n in pending if all(name in ready for name in _reads(n))]
        if not runnable:
            raise ValueError("graph has a cycle or reads a value nothing produces")
        for node in runnable:
            ordered.append(node)
            ready.update(node.output)
        pending = [n for n in pending if n not in runnable]
    del graph.node[:]
    graph.node.extend(ordered)


def _reads(node: onnx.NodeProto) -> set[str]:
    names = set(node.input)
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            inner = attribute.g
            produced = {i.name for i in inner.input} | {i.name for i in inner.initializer}
            for sub in inner.node:
                produced.update(sub.output)
            for sub in inner.node:
                names.update(name for name in _reads(sub) if name not in produced)
    return names


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
