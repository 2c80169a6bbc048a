"""The CNN half of `prunekit bench quantize`: the trained base, pruned copies and their int8 versions."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..quantize import QuantizeConfig, quantize_model
from . import common
from .config import BenchConfig
from .quantize_variants import float_variant, int8_variant


def cnn_variants(cfg: BenchConfig, arch: str, width: float, folder: Path) -> tuple[list, Any, dict[str, Any]]:
    """(variants, example input, base info): dense fp32 / int8, pruned fp32 / int8 per MAC target, and QAT
    int8 of the pruned model closest to 50% of the MACs (distilled from the dense model)."""
    seed = cfg.seeds[0]
    # every setting is checked before the base is trained: the quantization configs refuse bad --opt values
    ptq = QuantizeConfig(calib_batches=cfg.opts["calib_batches"], seed=seed)
    target = min(cfg.targets, key=lambda t: abs(t - 0.5))
    qat = QuantizeConfig(calib_batches=ptq.calib_batches, qat_epochs=1, qat_steps=cfg.opts["qat_steps"],
                         qat_lr=cfg.opts["qat_lr"], seed=seed)
    round_to = cfg.opts.get("round_to", 1)  # int8 kernels run odd channel counts slowly (docs/quantization.md)
    wcfgs = {t: common.workflow_config(cfg, arch, width, "oneshot", seed, t, criterion="l1", policy="uniform",
                                       round_to=round_to) for t in cfg.targets}
    data = common.load_data(cfg)
    base, entry = common.prepare_base(cfg, data, arch, width)
    example = data.example()
    models = {"dense": (base, 1.0)}
    for t, wcfg in wcfgs.items():
        common.log(f"{arch}: pruning to {t:.0%} of the MACs (uniform l1, widths multiples of {round_to}, "
                   f"{cfg.finetune_steps} fine-tuning steps)")
        pruned, _, _ = common.run_row(base, data, wcfg)
        models[f"pruned {t:.0%}"] = (pruned, common.counts(pruned, example)["macs"] / entry["macs"])
    variants = []
    for name, (model, kept) in models.items():
        top1 = common.evaluate(model, data)
        variants.append(float_variant(f"{name} fp32", model, kept, top1, example, folder))
        common.log(f"{arch}: {name} fp32 {100 * top1:.2f}%; static int8 ({ptq.calib_batches} calibration batches)")
        res = quantize_model(model, ptq, data.train_loader(seed), example_inputs=example, out=folder / name)
        variants.append(int8_variant(f"{name} int8 (PTQ)", res, kept, res.accuracy(data.test_loader)))
    model, kept = models[f"pruned {target:.0%}"]
    common.log(f"{arch}: QAT of pruned {target:.0%} ({qat.qat_steps} steps, distilled from dense)")
    res = quantize_model(model, qat, data.train_loader(seed), example_inputs=example, out=folder / "qat",
                         teacher=base)
    variants.append(int8_variant(f"pruned {target:.0%} int8 (QAT)", res, kept, res.accuracy(data.test_loader)))
    info = {"base_top1": entry["top1"], "macs": entry["macs"], "params": entry["params"],
            "train": entry.get("train"), "test_images": len(data.test_loader.dataset)}
    return variants, example, info
