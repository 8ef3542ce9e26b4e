"""Training across real processes: 2-rank DDP with gloo on CPU (torchrun), and Ctrl-C during a run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import torch
from test_training import TINY, write_dataset

from musicbridge.training.checkpoint import load_checkpoint

torch.set_num_threads(1)

WORKER = textwrap.dedent("""
    import sys
    from pathlib import Path

    import torch

    from musicbridge.data import load_dataset
    from musicbridge.models import get_preset
    from musicbridge.training.trainer import Trainer

    torch.set_num_threads(1)
    data, out, overrides = sys.argv[1], Path(sys.argv[2]), eval(sys.argv[3])
    trainer = Trainer(get_preset("mel_2bar", overrides), load_dataset(data), out / "run", device="cpu",
                      show_progress=False)
    trainer.run()
    torch.save(trainer.model.state_dict(), out / f"rank{trainer.processes.rank}.pt")
    torch.save(trainer.batches.indices(0), out / f"batch0-rank{trainer.processes.rank}.pt")
""")


def environment():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    data = write_dataset(tmp_path / "data", sizes=(64, 8, 8))
    (tmp_path / "worker.py").write_text(WORKER)
    overrides = {**TINY, "steps": 4, "batch_size": 16, "eval_every": 2}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(tmp_path / "worker.py"), str(data), str(tmp_path), repr(overrides)],
                            capture_output=True, text=True, timeout=240, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # The ranks trained on different windows, so equality comes from gradient averaging, not from luck.
    assert not set(torch.load(tmp_path / "batch0-rank0.pt")) & set(torch.load(tmp_path / "batch0-rank1.pt"))
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")  # written by rank 0 only
    assert checkpoint["step"] == 4
    assert all(torch.equal(checkpoint["model"][name], rank0[name]) for name in rank0)
    ends = [r for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "end"]
    assert len(ends) == 1 and ends[0]["world_size"] == 2 and ends[0]["ranks_in_sync"] is True


def test_train_cli_relaunches_through_torchrun(tmp_path):
    data = write_dataset(tmp_path / "data", sizes=(64, 8, 8))
    sets = [part for key in ("embed_size", "enc_size", "dec_size", "z_size") for part in ("--set", f"{key}={TINY[key]}")]
    result = subprocess.run([sys.executable, "-m", "musicbridge", "train", "--preset", "mel_2bar", "--data", str(data),
                             "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "8", "--device", "cpu",
                             "--nproc-per-node", "2", "--threads", "1", "--no-progress", *sets],
                            capture_output=True, text=True, timeout=240, env=environment())
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "end" and records[-1]["world_size"] == 2 and records[-1]["ranks_in_sync"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    data = write_dataset(tmp_path / "data", sizes=(64, 8, 8))
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "musicbridge", "train", "--preset", "mel_2bar", "--data", str(data),
                                "--out", str(run), "--steps", "100000", "--batch-size", "8", "--device", "cpu",
                                "--set", "eval_every=100000", "--set", "log_every=1", "--set", "z_size=4",
                                "--set", "enc_size=16", "--set", "dec_size=16", "--threads", "1", "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment())
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() or (run / "metrics.jsonl").stat().st_size == 0:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training never logged a step"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    assert "interrupted at step" in stderr
    checkpoint = load_checkpoint(run / "last.pt")
    end = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert end["kind"] == "end" and end["interrupted"] is True
    assert 1 <= checkpoint["step"] == end["step"] < 100000
