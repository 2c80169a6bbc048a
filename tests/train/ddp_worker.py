"""Run by test_distributed.py under ``python -m torch.distributed.run --nproc_per_node 2``."""
import sys
from pathlib import Path

import torch
from torch import nn

from prunekit.train import TrainConfig, Trainer, init_distributed, is_main_process
from prunekit.train.distributed import destroy_distributed, distributed_loader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toy import make_data  # noqa: E402


def main(out: Path) -> None:
    info = init_distributed()
    torch.manual_seed(100 + info.rank)      # each rank starts from different weights: DDP must sync them
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    data = make_data()
    loader = distributed_loader(data, batch_size=16, seed=7)
    val = distributed_loader(data, batch_size=64, shuffle=False)
    lines: list[str] = []
    config = TrainConfig(epochs=2, lr=0.1, warmup_epochs=0.5, seed=0, progress=False)
    trainer = Trainer(model, loader, val, config, checkpoint_dir=out / "ck", log=lines.append)
    result = trainer.fit()
    torch.save({"rank": info.rank, "world": info.world_size, "backend": info.backend, "init": init,
                "state": trainer.module.state_dict(), "lines": lines, "final": result.final, "steps": result.steps,
                "main": is_main_process(), "wrapped": type(trainer.model).__name__},
               out / f"rank{info.rank}.pt")
    destroy_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
