"""`prunekit train`: train a registered model on a data set (seeded: the same command gives the same weights);
writes checkpoints, the model and report.json into --out, which must not hold an earlier run."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..data.provenance import data_read
from ..models import create
from ..report import write_report
from ..train import TrainConfig, Trainer, evaluate, init_distributed, is_main_process, seed_everything
from ..workflow import prepare_output_dir
from ..workflow.models import check_fits_data
from . import argtypes as T
from .common import (CliError, add_data_args, add_model_args, add_output_args, build_loaders, example_input,
                     measure_model, metric_rows, model_kwargs, print_table, save_model)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=True)
    add_data_args(p)
    p.add_argument("--epochs", type=T.nonneg_int, default=10)
    p.add_argument("--lr", type=T.positive_float, default=None, help="default: 0.1 for sgd, 1e-3 for adamw")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--weight-decay", type=T.nonneg_float, default=5e-4)
    p.add_argument("--warmup-epochs", type=T.nonneg_float, default=0.0)
    p.add_argument("--label-smoothing", type=T.fraction, default=0.0)
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--max-steps-per-epoch", type=T.positive_int, default=None)
    p.add_argument("--device", type=T.device, default=None, help="default: cuda when available, else cpu")
    add_output_args(p, "runs/train", "output folder (checkpoints, model, report)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/last.pt")
    p.add_argument("--latency-runs", type=T.nonneg_int, default=30)
    p.add_argument("--no-progress", action="store_true")


def cmd_train(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise CliError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    dist = init_distributed()
    device = torch.device(args.device or dist.device)
    if args.amp and device.type != "cuda":  # the trainer would train in float32 while report.json says amp
        raise CliError(f"--amp needs a CUDA device; this run trains on {device}: drop --amp")
    if is_main_process():  # the folder is made by the first file written: a run failing earlier leaves none
        prepare_output_dir(out, overwrite=args.overwrite, resume=args.resume, create=False)
    info, loaders = build_loaders(args, distributed=dist.world_size > 1)
    h, w = info.image_size
    size = args.input_size or (h if h == w else [h, w])
    kw = model_kwargs(args.model, args.num_classes or info.num_classes, args.in_channels or info.in_channels,
                      args.width, size)
    check_fits_data(kw, info, "--num-classes/--in-channels")
    seed_everything(args.seed)  # before the model is built: its initial weights come from the seed
    model = create(args.model, **kw)
    lr = args.lr if args.lr is not None else (0.1 if args.optimizer == "sgd" else 1e-3)
    config = TrainConfig(epochs=args.epochs, lr=lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
                         warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, amp=args.amp,
                         seed=args.seed, max_steps_per_epoch=args.max_steps_per_epoch,
                         progress=not args.no_progress)
    trainer = Trainer(model, loaders.train, loaders.val, config, device=device,
                      checkpoint_dir=out, resume=args.resume, overwrite=args.overwrite)
    result = trainer.fit()
    t_train = time.perf_counter() - t_start
    test = evaluate(trainer.module, loaders.test, trainer.device)
    if not is_main_process():
        return 0
    model = trainer.module.cpu()
    save_model(model, out, (kw["in_channels"], *info.image_size))
    metrics = measure_model(model, example_input(kw["in_channels"], info.image_size), args.latency_runs)
    metrics.update(top1=test["top1"], top5=test["top5"], loss=test["loss"])
    write_report(out, {
        "model": {"name": args.model, **kw},
        "data": {"dataset": info.name, "data_dir": args.data_dir, "train": len(loaders.train.dataset),
                 "val": len(loaders.val.dataset) if loaders.val else 0, "test": len(loaders.test.dataset),
                 "seed": args.seed, "augment": args.augment},
        "data_read": data_read(args.dataset, args.data_dir),
        "method": {"name": "train", "config": config},
        "metrics": {"before": metrics, "after": None},
        "timings": {"train": t_train, "total": time.perf_counter() - t_start},
        "history": result.history,
    })
    print_table(f"{args.model} on {info.name}: {result.epochs} epochs, {t_train:.1f} s -> {out}", metric_rows(metrics))
    return 0
