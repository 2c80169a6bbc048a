"""Two CPU processes with gloo under torch.distributed.run: both ranks must end with identical weights."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

import prunekit
from prunekit.train import TrainConfig, Trainer, init_distributed, is_main_process, load_checkpoint

from .toy import make_data

HERE = Path(__file__).resolve().parent


class SamePermutation(Sampler):
    """The order DistributedSampler draws (seed + epoch), un-split: what the two ranks see together."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


def test_single_process_defaults():
    info = init_distributed()
    assert (info.rank, info.world_size, info.backend) == (0, 1, None)
    assert is_main_process()


def test_two_gloo_ranks_end_identical_and_match_one_process(tmp_path):
    src = str(Path(prunekit.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert (r0["world"], r0["backend"], r0["wrapped"]) == (2, "gloo", "DistributedDataParallel")
    assert r0["main"] and not r1["main"]
    assert not all(torch.equal(r0["init"][k], r1["init"][k]) for k in r0["init"])   # different starts
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])     # identical ends
    assert not all(torch.equal(r0["state"][k], r0["init"][k]) for k in r0["state"])  # it trained
    assert r0["steps"] == r1["steps"] == 2 * 8            # 256 samples / 2 ranks / batch 16
    assert r0["final"]["count"] == 256 and r0["final"] == r1["final"]  # metrics summed over both shards
    assert len(r0["lines"]) == 2 and r1["lines"] == []   # only rank 0 logs
    assert sorted(os.listdir(tmp_path / "ck")) == ["best.pt", "last.pt"]
    ck = load_checkpoint(tmp_path / "ck" / "last.pt")
    assert all(torch.equal(ck["model"][k], r0["state"][k]) for k in ck["model"])

    # one process, batch 32 over the same permutation, from rank 0's start: the same weights up to rounding
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))
    model.load_state_dict(r0["init"])
    data = make_data()
    loader = DataLoader(data, batch_size=32, sampler=SamePermutation(len(data), seed=7))
    Trainer(model, loader, config=TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.5, seed=0, progress=False,
                                              verbose=False)).fit()
    for k, v in model.state_dict().items():
        assert torch.allclose(v, r0["state"][k], atol=1e-5), k
