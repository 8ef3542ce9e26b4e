"""Training curves from runs/NAME/metrics.jsonl as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
from pathlib import Path

# (file, title, y label, [(record kind, field, legend label)])
FIGURES = (
    ("loss.png", "Loss", "nats per sequence",
     [("train", "loss", "train loss"), ("train", "recon", "train reconstruction"),
      ("valid", "loss", "valid loss (β max)"), ("valid", "recon", "valid reconstruction")]),
    ("kl.png", "KL divergence", "bits per sequence",
     [("train", "kl_bits", "train"), ("valid", "kl_bits", "valid (from μ, σ)")]),
    ("beta.png", "Schedules", "value",
     [("train", "beta", "β"), ("train", "sampling_prob", "scheduled sampling p")]),
    ("accuracy.png", "Accuracy", "fraction of steps",
     [("train", "acc", "train (teacher-forced, mixed inputs)"),
      ("valid", "recon_acc_teacher_forced", "valid teacher-forced"),
      ("valid", "recon_acc_sampled", "valid sampled (greedy from μ)"),
      ("valid", "recon_acc_sampled_onsets", "valid sampled, onsets"),
      ("valid", "recon_acc_sampled_shuffled_z", "valid sampled from another μ")]),
    # The vsae's game (training/objectives.py VSAEObjective); a VAE run has none of these fields.
    ("adversarial.png", "vsae: discriminator, latent regression, collapse", "value",
     [("train", "d_real", "D(real)"), ("train", "d_fake", "D(decoded)"), ("train", "d_loss", "D hinge loss"),
      ("train", "latent_mse", "train z MSE"), ("valid", "latent_mse", "valid z MSE"),
      ("train", "fake_distinct_share", "distinct decoded phrases (batch)"),
      ("valid", "prior_distinct_share", "distinct prior samples (valid)")]),
)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}; is it a training run directory?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write the curves into run_dir; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    written = []
    for filename, title, ylabel, series in FIGURES:
        figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
        for kind, field, label in series:
            points = [(r["step"], r[field]) for r in records if r.get("kind") == kind and r.get(field) is not None]
            if points:
                steps, values = zip(*points, strict=True)
                axes.plot(steps, values, label=label, marker="o" if kind == "valid" else None, markersize=3)
        if not axes.lines:  # another architecture's figure (a VAE run has no discriminator, a vsae no β)
            plt.close(figure)
            continue
        axes.set(title=f"{run_dir.name}: {title}", xlabel="step", ylabel=ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(run_dir / filename)
        plt.close(figure)
        written.append(run_dir / filename)
    return written
