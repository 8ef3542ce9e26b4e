"""What one training step does, per architecture: the VAE objective (MusicVAE, Transformer VAE) and the vsae's.

An objective owns its model's optimisers; the trainer (trainer.py) owns the loop, the batches, the per-step
random generators, validation metrics common to every model and the checkpoints:

    objective = objective_for(preset, model, processes)
    stats = objective.step(net, step, tokens, source, rng, lr)   # one update; floats to log
    losses = objective.validation_batch(model, tokens, source, rng)  # batch means (the "loss" picks best.pt)
    objective.state_dict() / load_state_dict(state)               # the checkpoint's "optimizer"

`net` is the model as the step must call it (DistributedDataParallel-wrapped in a distributed run), `rng` the
step's generator (seeded by seed, step and rank: a resumed run draws the same numbers), `lr` the schedule's.
"""

from __future__ import annotations

import torch

from musicbridge.models import Preset
from musicbridge.models.musicvae import CONDITION_SCALE, segment_codes
from musicbridge.models.vsae import VSAE, closure_latents
from musicbridge.training import augment, schedules
from musicbridge.training.loss import (
    LN2,
    code_nll,
    free_bits_groups,
    gaussian_nll,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_cost,
    kl_divergence,
    latent_mse,
    reconstruction_loss,
    vae_loss,
)

VSAE_BETAS = (0.5, 0.999)  # Adam's β₁ for both of the vsae's optimisers: DCGAN's, less momentum for a moving target


class VAEObjective:
    """Reconstruction cross-entropy + β · max(KL − free bits, 0) (loss.py), one Adam over every weight; scheduled
    sampling as a guide pass inside the one forward (trainer.py's docstring says why), token dropout on the
    decoder inputs."""

    def __init__(self, preset: Preset, model: torch.nn.Module, code_source: torch.nn.Module | None = None):
        self.model, self.config = model, preset.train
        self.code_source = code_source  # the flat model a hierarchical one grew from (TrainConfig.code_steps)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self.free_bits_groups = free_bits_groups(self.config.free_bits_per, model.z_size,
                                                 getattr(model, "latent_frames", 1))

    def step(self, net, step: int, tokens: torch.Tensor, source: torch.Tensor | None, rng: torch.Generator,
             lr: float) -> dict[str, float]:
        config, model = self.config, self.model
        eps = torch.randn(tokens.shape[0], model.z_size, generator=rng, device=tokens.device)
        if step < config.code_steps:
            return self._code_step(step, tokens, eps, lr)
        p_sample = schedules.sampling_probability(step, config)

        def decoder_inputs(guide: torch.Tensor | None) -> torch.Tensor:
            """Targets, mixed with one sample per step from the guide pass's logits, shifted; token dropout."""
            targets = tokens
            if guide is not None:
                targets = augment.mix_targets(tokens, augment.sample_tokens(guide, rng), p_sample, rng)
            random_vocab = model.decoder.vocab_size if config.token_dropout_kind == "random" else None
            return augment.token_dropout(model.decoder_inputs(targets), schedules.token_dropout_rate(step, config),
                                         model.decoder.start_token, model.decoder.mask_token, rng, random_vocab)

        beta = schedules.beta(step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if p_sample > 0:
            out = net(tokens, eps=eps, resample=decoder_inputs, source=source)
        else:
            out = net(tokens, decoder_inputs(None), eps, source=source)
        loss, stats = vae_loss(out["logits"], tokens, out["mu"], out["sigma"], beta, config.free_bits,
                               self.free_bits_groups)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        self.optimizer.step()
        values = {name: float(value) for name, value in stats.items()}
        values.update(beta=beta, lr=lr, sampling_prob=p_sample, grad_norm=float(grad_norm))
        return values

    def _code_step(self, step: int, tokens: torch.Tensor, eps: torch.Tensor, lr: float) -> dict[str, float]:
        """The encoder and conductor learn to give each segment the grown-from model's code of it: code_nll +
        β · max(KL − free bits, 0), z sampled as in every step (the conductor learns from the z's it will get)."""
        config, model = self.config, self.model
        beta = schedules.beta(step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            code_mu, code_sigma = segment_codes(self.code_source, tokens, model.segment)  # (B, S, Zs) each
        mu, sigma = model.encode(tokens)
        conditions = model.conductor(mu + sigma * eps, code_mu.shape[1])  # (B, S, C)
        nll = code_nll(conditions, code_mu, code_sigma, CONDITION_SCALE)
        cost = kl_cost(mu, sigma, config.free_bits, self.free_bits_groups)
        loss = (nll + beta * cost).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            kl_bits = float(kl_divergence(mu, sigma).mean() / LN2)
        return {"loss": float(loss.detach()), "code_nll": float(nll.detach().mean()), "kl_bits": kl_bits,
                "beta": beta, "lr": lr, "grad_norm": float(grad_norm)}

    @torch.no_grad()
    def validation_batch(self, model, tokens, source, rng) -> dict[str, float]:
        """Loss at the schedule's final β (a criterion that does not drift with β), reconstruction, KL of the
        sampled z's posterior."""
        eps = torch.randn(tokens.shape[0], model.z_size, generator=rng, device=tokens.device)
        out = model(tokens, eps=eps, source=source)
        _, stats = vae_loss(out["logits"], tokens, out["mu"], out["sigma"], self.config.beta_max,
                            self.config.free_bits, self.free_bits_groups)
        return {"loss": float(stats["loss"]), "recon": float(stats["recon"]),
                "kl_bits_sampled_z": float(stats["kl_bits"])}

    def progress(self, record: dict) -> str:
        if "acc" not in record:  # code steps only
            return f"code NLL {record['code_nll']:.1f} KL {record['kl_bits']:.1f}b β {record['beta']:.3f}"
        return (f"loss {record['loss']:.2f} KL {record['kl_bits']:.1f}b β {record['beta']:.3f} "
                f"acc {record['acc']:.3f} p {record['sampling_prob']:.2f}")

    def valid_line(self, record: dict) -> str:
        """The reconstruct task's validation summary (the trainer words the continuation task's itself)."""
        return (f"valid loss {record['loss']:.2f}, acc sampled {record['recon_acc_sampled']:.3f} (shuffled z "
                f"{record['recon_acc_sampled_shuffled_z']:.3f}), KL {record['kl_bits']:.1f} bits, "
                f"{record['active_units']}/{record['z_size']} active")

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


class VSAEObjective:
    """The vsae's step (models/vsae.py says why each term is there): a discriminator update, then one update of
    the encoder and decoder. Two Adams: the autoencoder's at the schedule's lr, the discriminator's at lr ×
    disc_lr_scale. Validation loss: reconstruction cross-entropy per step of real phrases decoded from μ + the
    latent MSE of decoded prior draws — the two terms whose values mean progress (adversarial ones do not)."""

    def __init__(self, preset: Preset, model: VSAE):
        self.model, self.config, self.weights = model, preset.train, model.config
        if self.config.task != "reconstruct":
            raise ValueError(f"the vsae learns to reconstruct its phrases (task = \"reconstruct\"), not to "
                             f"{self.config.task}; leave task at its default")
        self.discriminator_parameters = list(model.discriminator.parameters())
        owned = {id(parameter) for parameter in self.discriminator_parameters}
        self.autoencoder_parameters = [p for p in model.parameters() if id(p) not in owned]
        self.optimizer = torch.optim.Adam(self.autoencoder_parameters, lr=self.config.lr, betas=VSAE_BETAS)
        self.discriminator_optimizer = torch.optim.Adam(self.discriminator_parameters, lr=self.config.lr,
                                                        betas=VSAE_BETAS)

    def step(self, net, step: int, tokens: torch.Tensor, source: torch.Tensor | None, rng: torch.Generator,
             lr: float) -> dict[str, float]:
        model, weights, clip = self.model, self.weights, self.config.grad_clip
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for group in self.discriminator_optimizer.param_groups:
            group["lr"] = lr * weights.disc_lr_scale
        shape = (tokens.shape[0], model.z_size)
        z = torch.randn(shape, generator=rng, device=tokens.device)
        partner = torch.randn(shape, generator=rng, device=tokens.device)
        z = closure_latents(z, partner, weights.closure_share, rng)  # (B, Z)
        fake_tokens, fake = model.generate(z, rng)  # (B, T), (B, T, V) straight-through one-hot
        real = model.one_hot(tokens)  # (B, T, V)

        # The discriminator: real phrases against decoded ones (the decoder's graph left alone: fake detached).
        real_scores, fake_scores = model.discriminator(real), model.discriminator(fake.detach())
        d_loss = hinge_discriminator_loss(real_scores, fake_scores)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        d_grad_norm = torch.nn.utils.clip_grad_norm_(self.discriminator_parameters, clip)
        self.discriminator_optimizer.step()

        # The encoder and decoder, against the updated discriminator (its weights frozen for this pass).
        for parameter in self.discriminator_parameters:
            parameter.requires_grad_(False)
        try:
            adversarial = hinge_generator_loss(model.discriminator(fake))
        finally:
            for parameter in self.discriminator_parameters:
                parameter.requires_grad_(True)
        mu_fake, sigma_fake = model.encode_relaxed(fake)
        latent = latent_mse(mu_fake, z)
        sigma_nll = gaussian_nll(z, mu_fake.detach(), sigma_fake)
        mu_real, _ = model.encode(tokens)
        logits = model.teacher_forced_logits(mu_real, model.decoder_inputs(tokens))  # (B, T, V)
        recon = reconstruction_loss(logits, tokens).mean() / model.steps  # nats per step
        loss = (weights.adversarial_weight * adversarial + weights.latent_weight * latent
                + weights.recon_weight * recon + sigma_nll)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.autoencoder_parameters, clip)
        self.optimizer.step()
        with torch.no_grad():
            return {
                "loss": float(loss), "d_loss": float(d_loss), "adversarial": float(adversarial),
                "latent_mse": float(latent), "sigma_nll": float(sigma_nll), "recon": float(recon),
                "acc": float((logits.argmax(dim=-1) == tokens).float().mean()),
                "d_real": float(real_scores.mean()), "d_fake": float(fake_scores.mean()),
                "fake_distinct_share": distinct_share(fake_tokens), "lr": lr, "grad_norm": float(grad_norm),
                "d_grad_norm": float(d_grad_norm),
            }

    @torch.no_grad()
    def validation_batch(self, model, tokens, source, rng) -> dict[str, float]:
        mu, _ = model.encode(tokens)
        recon = reconstruction_loss(model.teacher_forced_logits(mu, model.decoder_inputs(tokens)), tokens).mean()
        z = torch.randn(tokens.shape[0], model.z_size, generator=rng, device=tokens.device)
        fake_tokens, _ = model.generate(z, rng)  # as the sampler plays at temperature 1
        latent = float(latent_mse(model.encode(fake_tokens)[0], z))
        return {
            "loss": float(recon) / model.steps + latent, "recon": float(recon), "latent_mse": latent,
            "d_real": float(model.discriminator(model.one_hot(tokens)).mean()),
            "d_fake": float(model.discriminator(model.one_hot(fake_tokens)).mean()),
            "prior_distinct_share": distinct_share(fake_tokens),
        }

    def progress(self, record: dict) -> str:
        return (f"loss {record['loss']:.2f} D {record['d_loss']:.2f} (real {record['d_real']:+.2f} fake "
                f"{record['d_fake']:+.2f}) z-MSE {record['latent_mse']:.3f} acc {record['acc']:.3f}")

    def valid_line(self, record: dict) -> str:
        return (f"valid loss {record['loss']:.3f}, acc sampled {record['recon_acc_sampled']:.3f} (shuffled z "
                f"{record['recon_acc_sampled_shuffled_z']:.3f}), z-MSE {record['latent_mse']:.3f}, prior samples "
                f"{record['prior_distinct_share']:.0%} distinct, D real {record['d_real']:+.2f} fake "
                f"{record['d_fake']:+.2f}")

    def state_dict(self) -> dict:
        return {"autoencoder": self.optimizer.state_dict(),
                "discriminator": self.discriminator_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["autoencoder"])
        self.discriminator_optimizer.load_state_dict(state["discriminator"])


def distinct_share(tokens: torch.Tensor) -> float:
    """Share of distinct phrases among rows (B, T): near 1 for a healthy sampler, 1/B for a collapsed one."""
    return float(len(torch.unique(tokens, dim=0)) / max(1, len(tokens)))


def objective_for(preset: Preset, model: torch.nn.Module, distributed: bool = False,
                  code_source: torch.nn.Module | None = None):
    """The objective of the preset's architecture (the vsae's runs in one process only); `code_source`: the
    model whose segment codes the first code_steps teach (trainer.py loads it from init_from)."""
    if preset.model.architecture != "vsae":
        return VAEObjective(preset, model, code_source)
    if distributed:
        raise ValueError("the vsae trains in one process: its two optimisers and three discriminator passes per step "
                         "are not wired to DistributedDataParallel; leave out --nproc-per-node")
    return VSAEObjective(preset, model)
