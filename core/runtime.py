"""The torch-free inference engine: an exported model directory → onnxruntime sessions behind the sampling API.

    model = load_model("exports/mel_2bar")       # or a shipped model's name
    mu, sigma = model.encode(tokens)              # (B, T) → (B, Z), (B, Z)
    tokens = model.sample(z, temperature=0.5, seed=1)
    answers = model.continue_(phrase, variations=4, novelty=0.5, scale="D:dorian")

Sampling: token = argmax(logits + temperature · Gumbel noise) at every step (greedy at temperature 0), the
noise drawn here with numpy from `seed`, so a seed gives the same tokens on every run and every machine, and the
same as the torch reference fed the same noise (export/parity.py). Every call is batch-first; one session.run
decodes every step of every sequence of a batch.

Scale lock: every sampling call takes `scale` (a musicbridge.scales spec, Scale or pitch classes; None = free);
its mask (musicbridge.scales.logit_mask) goes into the sampler's `logit_mask` input, so no note-on outside the
scale can win an argmax. Graphs exported before that input existed get the same mask added to their noise.

Prior: `sample_prior` draws z from the model's fitted prior (prior.npz, musicbridge.latent_prior) when its export
has one — a density fitted to where the encoder puts the training phrases — else from N(0, I).

Attribute knobs: sample, sample_prior and continue_ take `attributes={"density": 1.0, ...}` and decode z + Σ α·v
with the export's attribute vectors (attributes.npz, musicbridge.attributes); knobs at 0 change nothing, bit for
bit. interpolate takes none: its path is fixed by the two phrases it joins.

Lookback: a continuation exported with lookback (model.json "lookback": true) has one more sampler (and
teacher_forced) input, `lookback` (B, T) — the phrase it continues, read step by step beside z (Magenta's
Lookback RNN). continue_ feeds it the window it continues; sample / run_sampler need it as lookback=.

Never imports torch (tests/test_no_torch.py): the live bridge loads this.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from musicbridge.attributes import ATTRIBUTE_VECTORS, AttributeVectors, knobs
from musicbridge.codecs import UnknownRepresentationError, codec_from_description
from musicbridge.latent_prior import AUTO, FITTED, PRIOR_CHOICES, STANDARD, FittedPrior
from musicbridge.scales import Scale, as_scale, logit_mask

FORMAT = 1
SHIPPED_DIR = Path(__file__).parent / "shipped"
ROLES = ("encoder", "sampler", "teacher_forced")
# model.json keys the runtime relies on, with their types; each graph's metadata_props must agree on them.
REQUIRED = {"format": int, "representation": dict, "bars": int, "steps_per_bar": int, "steps": int,
            "vocab_size": int, "z_size": int, "hierarchical": bool, "variants": dict, "default_variant": str}
CHECKED_IN_GRAPHS = ("representation", "bars", "steps", "vocab_size", "z_size", "hierarchical", "segment_bars")
# Keys that exports older than the key lack (in model.json and in the graphs), with the value those exports meant.
# segment_bars: the bars a hierarchical model's bottom decoder writes per restart (one per conductor output).
DEFAULTS = {"segment_bars": 1}
MASK_INPUT = "logit_mask"  # the sampler's scale-lock input (export/musicvae.py sampler_noise)
LOOKBACK_INPUT = "lookback"  # a lookback continuation's input: the phrase it continues (export/musicvae.py)
# Model.interpolate: "inputs" = the path starts on a and ends on b themselves; "decoded" = every point decoded.
INTERPOLATION_ENDS = ("inputs", "decoded")
CONTINUATION_DIR = "continuation"  # a model directory's optional sub-model that writes what comes next


class ModelLoadError(ValueError):
    """An exported model that cannot be used: missing or corrupt files, unknown representation, bad metadata."""


def shipped_models() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "model.json").is_file())


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """An exported model directory: the path itself, else a shipped model of that name."""
    path = Path(path_or_name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; a model is a directory made by `musicbridge export`")
        return path
    if len(path.parts) == 1 and (SHIPPED_DIR / path.name / "model.json").is_file():
        return SHIPPED_DIR / path.name
    shipped = ", ".join(shipped_models()) or "none in this installation"
    raise ModelLoadError(f"no model directory at {path} and no shipped model called {str(path_or_name)!r} "
                         f"(shipped models: {shipped})")


def is_exported_model(path_or_name: str | os.PathLike) -> bool:
    """An exported model directory (it has model.json) or the name of a shipped model."""
    path = Path(path_or_name).expanduser()
    if path.exists():
        return path.is_dir() and (path / "model.json").is_file()
    return len(path.parts) == 1 and (SHIPPED_DIR / path.name / "model.json").is_file()


def gpu_present() -> bool:
    """A CUDA device is really there (onnxruntime-gpu lists its CUDA provider on machines without one)."""
    if os.path.exists("/dev/nvidia0"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def choose_providers(device: str = "auto") -> list[str]:
    """auto: CUDA when onnxruntime has it AND a GPU is present, else CPU; cpu; cuda (an error if unavailable)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cpu" or (device == "auto" and not (has_cuda and gpu_present())):
        return ["CPUExecutionProvider"]
    if device in ("auto", "cuda"):
        if not has_cuda:
            raise ModelLoadError(f"CUDA was asked for but this onnxruntime has no CUDA provider (it has: "
                                 f"{', '.join(available)}); install onnxruntime-gpu or use device='cpu'")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")


def load_model(path_or_name: str | os.PathLike, variant: str | None = None, device: str = "auto",
               threads: int = 1, warmup: bool = True) -> Model:
    """Load an exported model directory (or a shipped model by name); every problem is a ModelLoadError.

    variant: fp32 / int8 / fp16 (default: the directory's default_variant); threads: onnxruntime intra-op
    threads (1 by default: the daemon has other threads to keep on time; 0 = one per core, for offline work);
    warmup: run each session once now, so the first real call is not the slow one."""
    path = resolve_model_path(path_or_name)
    metadata = read_metadata(path)
    try:
        codec = codec_from_description(metadata["representation"])
    except UnknownRepresentationError as error:
        raise ModelLoadError(f"{path}: {error}") from None
    if (codec.vocab_size, codec.steps_per_bar) != (metadata["vocab_size"], metadata["steps_per_bar"]):
        raise ModelLoadError(f"{path}: model.json says vocab {metadata['vocab_size']} / {metadata['steps_per_bar']} "
                             f"steps per bar but representation {codec.name} v{codec.version} has "
                             f"{codec.vocab_size} / {codec.steps_per_bar}")
    variant = variant or metadata["default_variant"]
    if variant not in metadata["variants"]:
        raise ModelLoadError(f"{path} has no {variant!r} variant (it has: {', '.join(metadata['variants'])}); "
                             f"export it with --quantize int8 or --fp16")
    files = metadata["variants"][variant]
    for role in ROLES:
        name = files.get(role) if isinstance(files, dict) else None
        # Plain file names only: a model directory never points at files outside itself.
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ModelLoadError(f"{path}/model.json names no usable {role} graph for variant {variant} "
                                 f"(got {name!r})")
    model = Model(path, metadata, codec, variant, {role: path / files[role] for role in ROLES},
                  choose_providers(device), threads)
    model.prior = _load_prior(path, metadata)
    model.attributes = _load_attributes(path, metadata)
    model.continuation = _load_continuation(model, device, threads, warmup)
    model.session("encoder")
    model.session("sampler")  # teacher_forced loads on first use: only evaluation needs it
    if warmup:
        probe = np.zeros((1, model.steps), np.int64)
        try:
            model.sample(model.encode(probe)[0], temperature=1.0, seed=0, lookback=probe if model.lookback else None)
        except Exception as error:  # graphs that load but do not run as the metadata says
            raise ModelLoadError(f"{path}: the {variant} graphs fail on a test input ({type(error).__name__}: "
                                 f"{str(error).strip()[:300]})") from None
    return model


def _load_continuation(model: Model, device: str, threads: int, warmup: bool) -> Model | None:
    """The model directory's continuation/ sub-model (trained to write the phrase after the one it encodes),
    in the same variant where it has one; None when there is none. It must speak the model's representation
    at the model's length, or the whole model is refused."""
    folder = model.path / CONTINUATION_DIR
    if not (folder / "model.json").is_file():
        return None
    metadata = read_metadata(folder)
    variant = model.variant if model.variant in metadata.get("variants", {}) else None
    follower = load_model(folder, variant=variant, device=device, threads=threads, warmup=warmup)
    if follower.metadata.get("task") != "continue":
        raise ModelLoadError(f"{folder} is not a continuation model (its task is {follower.metadata.get('task')!r}); "
                             f"export one with `musicbridge export … --continuation CHECKPOINT`")
    if (follower.codec.describe(), follower.steps) != (model.codec.describe(), model.steps):
        raise ModelLoadError(f"{folder} continues {follower.codec.name} phrases of {follower.steps} steps; the model "
                             f"plays {model.codec.name} phrases of {model.steps} — export them together")
    return follower


def _load_prior(path: Path, metadata: dict) -> FittedPrior | None:
    """The fitted prior model.json lists ("prior": {"kind", "file", ...}, its sha256 under "sha256"), checked like
    the graphs; None when it lists none (N(0, I) then)."""
    listed = _listed_file(path, metadata, "prior", "prior")
    if listed is None:
        return None
    entry, data = listed
    try:
        return FittedPrior.from_bytes(data, entry.get("kind"), metadata["z_size"])
    except ValueError as error:
        raise ModelLoadError(f"{path / entry['file']} is not a usable prior: {error} — export the model again") from None


def _load_attributes(path: Path, metadata: dict) -> AttributeVectors | None:
    """The attribute vectors model.json lists ("attributes": {"kind", "file", ...}, hashed under "sha256"), checked
    like the graphs; None when it lists none (the attribute knobs then only take 0)."""
    listed = _listed_file(path, metadata, "attributes", "attribute vectors")
    if listed is None:
        return None
    entry, data = listed
    try:
        return AttributeVectors.from_bytes(data, entry.get("kind", ATTRIBUTE_VECTORS), metadata["z_size"])
    except ValueError as error:
        raise ModelLoadError(f"{path / entry['file']} holds no usable attribute vectors: {error} — export the model "
                             f"again") from None


def _listed_file(path: Path, metadata: dict, key: str, what: str) -> tuple[dict, bytes] | None:
    """(entry, contents) of the extra file model.json lists under `key` ({"file", ...}), its sha256 checked; None
    when it lists none. `what` names it in the errors."""
    entry = metadata.get(key)
    if entry is None:
        return None
    name = entry.get("file") if isinstance(entry, dict) else None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ModelLoadError(f"{path}/model.json names no usable {what} file (got {entry!r}); export the model again")
    expected = metadata.get("sha256", {}).get(name)
    if expected is None:
        raise ModelLoadError(f"{path}/model.json lists the {what} {name} without its sha256; export the model again")
    return entry, _check_file(path / name, expected, what=f"{what} file")


def read_metadata(path: Path) -> dict:
    meta_file = path / "model.json"
    if not meta_file.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise ModelLoadError(f"{path} is not an exported model: no model.json (found: {found}); "
                             f"make one with `musicbridge export CHECKPOINT -o {path}`")
    try:
        metadata = json.loads(meta_file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{meta_file} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{meta_file} must hold a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(metadata.get(key), kind) or (kind is int and isinstance(metadata.get(key), bool)):
            raise ModelLoadError(f"{meta_file}: {key!r} missing or not of type {kind.__name__} "
                                 f"(got {metadata.get(key)!r}); re-export the model")
    if metadata["format"] != FORMAT:
        raise ModelLoadError(f"{meta_file}: format {metadata['format']} is not known to this musicbridge "
                             f"(it reads format {FORMAT})")
    if metadata["steps"] != metadata["bars"] * metadata["steps_per_bar"]:
        raise ModelLoadError(f"{meta_file}: steps {metadata['steps']} != bars × steps_per_bar")
    segment_bars = metadata.get("segment_bars", DEFAULTS["segment_bars"])
    if (not isinstance(segment_bars, int) or isinstance(segment_bars, bool) or segment_bars < 1
            or metadata["bars"] % segment_bars or (segment_bars != 1 and not metadata["hierarchical"])):
        raise ModelLoadError(f"{meta_file}: segment_bars {segment_bars!r} is not a divisor of bars "
                             f"({metadata['bars']}) of a hierarchical model, nor 1; re-export the model")
    return metadata


def _check_file(path: Path, expected_sha256: str | None, what: str = "graph file") -> bytes:
    if not path.is_file():
        raise ModelLoadError(f"missing {what} {path}; the export is incomplete — export the model again")
    data = path.read_bytes()
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ModelLoadError(f"{path} is corrupt or truncated ({len(data)} bytes; its checksum differs from the "
                             f"one in model.json) — export the model again")
    return data


class Model:
    """An exported MusicVAE: encode / sample / continue_ / interpolate / sample_prior, numpy in and out."""

    def __init__(self, path: Path, metadata: dict, codec, variant: str, files: dict[str, Path],
                 providers: list[str], threads: int):
        self.path, self.metadata, self.codec, self.variant, self.files = path, metadata, codec, variant, files
        self.providers, self.threads = providers, threads
        self.bars, self.steps, self.z_size = metadata["bars"], metadata["steps"], metadata["z_size"]
        self.steps_per_bar, self.vocab_size = metadata["steps_per_bar"], metadata["vocab_size"]
        self.hierarchical = metadata["hierarchical"]
        self.segment_bars = metadata.get("segment_bars", DEFAULTS["segment_bars"])
        # Steps the decoder writes per restart: segment_bars bars (hierarchical) or the whole phrase (flat).
        self.segment = self.segment_bars * self.steps_per_bar if self.hierarchical else self.steps
        self.start_token = self.vocab_size
        # What `temperature` means for this sampler: the noise is drawn at temperature · temperature_scale. A
        # parallel continuation chooses every step independently, so the user's temperature 1 plays it at the
        # scale its export declares (models/musicvae.py PARALLEL_TEMPERATURE_SCALE); 1 for every other model.
        self.temperature_scale = float(metadata.get("temperature_scale", 1.0))
        self._sessions: dict[str, object] = {}
        self._masks: dict[Scale | None, np.ndarray] = {}
        self._takes_mask: bool | None = None  # whether the sampler graph has the logit_mask input
        self._lookback: bool | None = None  # whether it has the lookback input (the `lookback` property)
        # The continuation/ sub-model when the directory has one (load_model sets it): continue_ then plays
        # what comes next instead of a variation of the input.
        self.continuation: Model | None = None
        # The fitted prior when the export has one (load_model sets it): sample_prior draws z from it.
        self.prior: FittedPrior | None = None
        # The attribute vectors when the export has them (load_model sets them): the `attributes=` knobs.
        self.attributes: AttributeVectors | None = None

    def __repr__(self) -> str:
        return (f"Model({self.path.name!r}, {self.codec.name} v{self.codec.version}, bars={self.bars}, "
                f"z={self.z_size}, {self.variant}, {self.providers[0]})")

    # -- sessions ---------------------------------------------------------------------------------------------

    def session(self, role: str):
        if role not in self._sessions:
            self._sessions[role] = self._open(role)
        return self._sessions[role]

    def _open(self, role: str):
        import onnxruntime as ort

        path = self.files[role]
        data = _check_file(path, self.metadata.get("sha256", {}).get(path.name))
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(data, options, providers=self.providers)
        except Exception as error:  # onnxruntime raises its own classes for protobuf/graph/kernel failures
            raise ModelLoadError(f"{path} is not a usable ONNX graph ({type(error).__name__}: "
                                 f"{str(error).strip()[:300]}) — export the model again") from None
        props = session.get_modelmeta().custom_metadata_map
        expected = {"role": role, "variant": self.variant} | {key: self.metadata.get(key, DEFAULTS.get(key))
                                                              for key in CHECKED_IN_GRAPHS}
        for key, value in expected.items():
            stored = props.get(f"musicbridge.{key}", json.dumps(DEFAULTS[key]) if key in DEFAULTS else None)
            if stored is None or json.loads(stored) != value:
                raise ModelLoadError(f"{path}: its metadata says {key} = {stored} but model.json expects "
                                     f"{json.dumps(value)}; the files come from different exports")
        return session

    # -- the sampling API -------------------------------------------------------------------------------------

    def encode(self, tokens) -> tuple[np.ndarray, np.ndarray]:
        """μ, σ (B, Z) float32 of q(z | tokens); tokens (B, T) or (T,) integers in [0, vocab)."""
        mu, sigma = self.session("encoder").run(None, {"tokens": self._tokens(tokens)})
        return mu, sigma

    def sample(self, z, temperature: float = 1.0, seed: int | None = None, rng=None, scale=None,
               lookback=None, attributes=None, latents: list | None = None) -> np.ndarray:
        """Tokens (B, T) int64 decoded from z (B, Z): greedy at temperature 0, else sampled at that temperature
        (× the export's temperature_scale, 1 unless it declares one: a parallel continuation's);
        no note-on outside `scale` (None = every note allowed). `lookback` (B, T): the phrase a lookback model
        continues (required for one, refused for any other; see `lookback`). `attributes` ({name: α}): decode
        z + Σ α·v along the model's attribute vectors (see shift). `latents` (a list): each z decoded, (B, Z)
        after that shift, is appended to it — continue_, interpolate and sample_prior pass it on."""
        z = np.ascontiguousarray(np.atleast_2d(np.asarray(z, dtype=np.float32)))
        if z.ndim != 2 or z.shape[1] != self.z_size:
            raise ValueError(f"expected z of shape (batch, {self.z_size}), got {z.shape}")
        z = self.shift(z, attributes)
        if latents is not None:  # the codes as decoded, for whoever records them (the session log)
            latents.append(z)
        noise = self.noise(z.shape[0], float(temperature) * self.temperature_scale,
                           rng if rng is not None else np.random.default_rng(seed))
        return self.run_sampler(z, noise, scale, lookback)

    def run_sampler(self, z: np.ndarray, noise: np.ndarray, scale=None, lookback=None) -> np.ndarray:
        """The sampler graph on z (B, Z) float32 and noise (B, T, V) float32, locked to `scale`: tokens (B, T);
        a lookback model also reads `lookback` (B, T).

        The mask is the graph's logit_mask input; a graph exported before that input existed gets it added to
        the noise instead — the very sum the newer graph does before its loop (logits + (noise + mask))."""
        mask = self.scale_mask(scale)
        session = self.session("sampler")
        feeds = {"z": z} | self._lookback_feed(lookback, len(z))
        if self._takes_mask is None:
            self._takes_mask = MASK_INPUT in {i.name for i in session.get_inputs()}
        if self._takes_mask:
            return session.run(None, feeds | {"noise": noise, MASK_INPUT: mask})[0]
        if scale is not None:
            noise = noise + mask  # (B, T, V) + (V,)
        return session.run(None, feeds | {"noise": noise})[0]

    @property
    def lookback(self) -> bool:
        """Whether the sampler reads, beside z, the phrase it continues (a lookback continuation: its graphs have
        the `lookback` input); such a model samples only with lookback=, and continue_ feeds it."""
        if self._lookback is None:
            self._lookback = LOOKBACK_INPUT in {i.name for i in self.session("sampler").get_inputs()}
        return self._lookback

    def _lookback_feed(self, lookback, batch: int) -> dict[str, np.ndarray]:
        """The graphs' lookback input for `batch` rows: {} for a model without one, which refuses a lookback."""
        if not self.lookback:
            if lookback is not None:
                raise ValueError(f"{self.path.name} has no lookback input (it was exported without lookback); "
                                 f"call it without lookback=")
            return {}
        if lookback is None:
            raise ValueError(f"{self.path.name} is a lookback continuation: it reads the phrase it continues step by "
                             f"step, so pass that phrase as lookback=(batch, {self.steps}) tokens, or call continue_")
        lookback = self._tokens(lookback)
        if len(lookback) != batch:
            raise ValueError(f"lookback has {len(lookback)} phrases for a batch of {batch}; give one per row")
        return {LOOKBACK_INPUT: lookback}

    def scale_mask(self, scale=None) -> np.ndarray:
        """The (V,) float32 logit mask of `scale` for this model's representation (zeros for None), cached."""
        scale = as_scale(scale)
        if scale not in self._masks:
            self._masks[scale] = logit_mask(self.codec, scale)
        return self._masks[scale]

    def shift(self, z: np.ndarray, attributes=None) -> np.ndarray:
        """z (B, Z) float32 moved along the attribute vectors: z + Σ α·v for {name: α} in `attributes`; z itself
        when every α is 0 or there are none. A ValueError for an unknown name, or a moving knob on a model exported
        without vectors (musicbridge.attributes.knobs)."""
        if self.attributes is None:
            knobs(attributes, None)  # knobs at 0 pass; the rest is refused with the fix
            return z
        return self.attributes.shift(z, attributes)

    def continue_(self, tokens, bars: int | None = None, temperature: float = 1.0, variations: int = 1,
                  novelty: float = 1.0, seed: int | None = None, scale=None, attributes=None,
                  latents: list | None = None) -> np.ndarray:
        """Answers to phrases: (B * variations, bars * steps_per_bar) int64, rows grouped by input phrase.

        The last `self.bars` bars of each phrase (shorter phrases are repeated to fill them) are encoded; each
        variation decodes z = μ + novelty · σ · ε (ε ~ N(0, I); novelty 0 = μ itself). With a continuation
        sub-model, encoder and decoder are its own: z codes the phrase that follows, so the answer is the next
        bars; without one, the model's own (a variation of the input). `bars` (default: the model's) longer
        than the model continues chunk by chunk, each chunk encoded to make the next. A lookback writer also
        reads the phrase it continues step by step: the input window, then for each chunk the one before it.
        `attributes` ({name: α}) moves every chunk's z along the writer's attribute vectors (see shift)."""
        bars = self.bars if bars is None else int(bars)
        if bars < 1 or variations < 1:
            raise ValueError(f"bars and variations must be ≥ 1, got {bars} and {variations}")
        rng = np.random.default_rng(seed)
        writer = self.continuation or self
        if writer is not self and writer.attributes is None and knobs(attributes, self.attributes):
            raise ValueError(f"{self.path.name} continues with its continuation model, which has no attribute vectors "
                             f"(the knobs move the model's own codes); leave the attributes at 0 to continue")
        writer.shift(np.zeros((1, writer.z_size), np.float32), attributes)  # refuse bad knobs before any work
        window = self._window(tokens)
        chunks = []
        for _ in range(-(-bars // self.bars)):
            mu, sigma = writer.encode(window)
            lookback = None
            if not chunks:  # the variations fan out from the input phrase
                mu, sigma = np.repeat(mu, variations, axis=0), np.repeat(sigma, variations, axis=0)
            if writer.lookback:  # the phrase this chunk continues, one row per variation
                lookback = np.repeat(window, variations, axis=0) if not chunks else window
            z = mu + float(novelty) * sigma * rng.standard_normal(mu.shape).astype(np.float32)
            window = writer.sample(z, temperature, rng=rng, scale=scale, lookback=lookback, attributes=attributes,
                                   latents=latents)
            chunks.append(window)
        return np.concatenate(chunks, axis=1)[:, : bars * self.steps_per_bar]

    def interpolate(self, a, b, steps: int, temperature: float = 0.0, seed: int | None = None, scale=None,
                    ends: str = "inputs", latents: list | None = None) -> np.ndarray:
        """The path from phrase a to phrase b: (steps, T) for two phrases (T,), (B, steps, T) for batches.

        ends="inputs" (default): the first and last phrases are a and b themselves, verbatim — decoding μ(a)
        changes some of its steps (4 % of a test phrase's on the shipped mel_2bar, more on less accurate models) —
        and the steps − 2 between them are decoded from the slerp between μ(a) and μ(b), at α = 1/(steps − 1), …,
        (steps − 2)/(steps − 1).
        ends="decoded": every point is decoded, the ends too (the latent path alone; steps ≥ 1).
        Greedy by default, so each point is the model's most likely phrase there; `scale` locks the decoded
        points (the ends given stay as they were played)."""
        if ends not in INTERPOLATION_ENDS:
            raise ValueError(f"unknown ends {ends!r}; choose one of {', '.join(INTERPOLATION_ENDS)}")
        single = np.ndim(a) == 1
        a, b = self._tokens(a), self._tokens(b)
        if a.shape != b.shape:
            raise ValueError(f"a and b differ in shape: {a.shape} vs {b.shape}")
        verbatim = ends == "inputs"
        if steps < 1 + verbatim:
            raise ValueError(f"steps must be ≥ {1 + verbatim} (ends={ends!r}), got {steps}")
        alphas = np.linspace(0.0, 1.0, steps)
        inner = slice(1, -1) if verbatim else slice(None)
        out = np.empty((len(a), steps, self.steps), np.int64)  # (B, steps, T)
        out[:, 0], out[:, -1] = a, b  # overwritten by the decoded ends when ends="decoded"
        if len(alphas[inner]):
            mu, _ = self.encode(np.concatenate([a, b]))
            z = np.concatenate([slerp(mu[i], mu[len(a) + i], alphas[inner]) for i in range(len(a))])
            decoded = self.sample(z.astype(np.float32), temperature, seed, scale=scale, latents=latents)
            out[:, inner] = decoded.reshape(len(a), -1, self.steps)
        return out[0] if single else out

    def sample_prior(self, n: int, temperature: float = 1.0, seed: int | None = None, scale=None,
                     prior: str = AUTO, attributes=None, latents: list | None = None) -> np.ndarray:
        """n phrases (n, T) decoded from z drawn from the prior `prior` names (see prior_z): by default the
        model's fitted prior when its export has one, else N(0, I); `attributes` moves those z (see shift)."""
        rng = np.random.default_rng(seed)
        return self.sample(self.prior_z(n, rng, prior), temperature, rng=rng, scale=scale, attributes=attributes,
                           latents=latents)

    def prior_z(self, n: int, rng: np.random.Generator, prior: str = AUTO) -> np.ndarray:
        """n codes (n, Z) float32: "auto" = the fitted prior when the model has one, else N(0, I); "fitted" = the
        fitted prior (a ValueError without one); "standard" = N(0, I), the same draws as without a fitted prior."""
        if prior not in PRIOR_CHOICES:
            raise ValueError(f"unknown prior {prior!r}; choose one of {', '.join(PRIOR_CHOICES)}")
        if prior == FITTED and self.prior is None:
            raise ValueError(f"{self.path} has no fitted prior; export it with --data DATASET to fit one, or sample "
                             f"with prior='standard'")
        if prior == STANDARD or self.prior is None:
            return rng.standard_normal((int(n), self.z_size)).astype(np.float32)
        return self.prior.draw(int(n), rng)

    # -- evaluation -------------------------------------------------------------------------------------------

    def decoder_inputs(self, tokens) -> np.ndarray:
        """Teacher-forcing inputs (B, T): each segment (segment_bars bars when hierarchical, see `segment`)
        shifted right behind the start token — the same as MusicVAE.decoder_inputs."""
        tokens = self._tokens(tokens)
        segments = tokens.reshape(tokens.shape[0], -1, self.segment)
        start = np.full_like(segments[..., :1], self.start_token)
        return np.concatenate([start, segments[..., :-1]], axis=-1).reshape(tokens.shape)

    def teacher_forced_logits(self, tokens, z, lookback=None) -> np.ndarray:
        """Logits (B, T, V) of each step given the true previous tokens of `tokens` (B, T) and z (B, Z) —
        the signature of musicbridge.training.evaluate's models; a lookback model also reads `lookback` (B, T)."""
        z = np.ascontiguousarray(np.atleast_2d(np.asarray(z, dtype=np.float32)))
        inputs = self.decoder_inputs(tokens)
        if z.shape != (inputs.shape[0], self.z_size):
            raise ValueError(f"expected z of shape ({inputs.shape[0]}, {self.z_size}), got {z.shape}")
        feeds = {"z": z, "inputs": inputs} | self._lookback_feed(lookback, len(inputs))
        return self.session("teacher_forced").run(None, feeds)[0]

    # -- helpers ----------------------------------------------------------------------------------------------

    def _tokens(self, tokens) -> np.ndarray:
        array = np.asarray(tokens)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.steps:
            raise ValueError(f"expected tokens of shape (batch, {self.steps}) or ({self.steps},), got {array.shape}")
        if array.dtype.kind not in "iu":
            raise ValueError(f"tokens must be integers, got {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}) for {self.codec.name}, got "
                             f"{array.min()}..{array.max()}")
        return np.ascontiguousarray(array, dtype=np.int64)

    def _window(self, tokens) -> np.ndarray:
        """The last `bars` bars of each phrase (B, T); shorter phrases are repeated to fill them."""
        array = np.asarray(tokens)
        array = array[None, :] if array.ndim == 1 else array
        if array.ndim != 2 or array.shape[1] == 0:
            raise ValueError(f"expected phrases of shape (batch, steps), got {array.shape}")
        if array.shape[1] < self.steps:
            array = np.tile(array, (1, -(-self.steps // array.shape[1])))
        return self._tokens(array[:, -self.steps :])

    def noise(self, batch: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
        """What the sampler adds to the logits: temperature · Gumbel(0, 1) noise (B, T, V); zeros at temperature 0."""
        temperature = float(temperature)
        if not np.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}")
        shape = (batch, self.steps, self.vocab_size)
        if temperature == 0:
            return np.zeros(shape, np.float32)
        uniform = rng.random(shape, dtype=np.float32)
        np.clip(uniform, 1e-10, 1.0 - 1e-7, out=uniform)
        # Gumbel(0, 1) = -log(-log(U)), scaled: argmax(logits + t·g) = argmax(logits / t + g).
        return (-temperature) * np.log(-np.log(uniform))


def path_distances(path, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances (steps whose tokens differ) of each phrase of an interpolation path (…, steps, T) to its
    ends a and b (…, T): two (…, steps) int arrays. On an ends="inputs" path they start and end at 0."""
    path = np.asarray(path)
    to_a = (path != np.asarray(a)[..., None, :]).sum(axis=-1)
    to_b = (path != np.asarray(b)[..., None, :]).sum(axis=-1)
    return to_a, to_b


def slerp(a: np.ndarray, b: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Spherical interpolation between two vectors, one row per alpha (linear when they are parallel)."""
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if omega < 1e-6:
        return np.outer(1 - alphas, a) + np.outer(alphas, b)
    return (np.outer(np.sin((1 - alphas) * omega), a) + np.outer(np.sin(alphas * omega), b)) / np.sin(omega)
