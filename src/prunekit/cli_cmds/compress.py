"""`prunekit compress` / `prunekit decompress`: a model to a compressed file (FORMAT.md) and back.

`compress` optionally prunes (magnitude, per layer) and shares weights (k-means, bits per layer type), then
writes the file; for the full Deep Compression pipeline with retraining use
`prunekit prune --method deep_compression` (run_workflow; the library function is
`prunekit.methods.deep_compression`). `decompress` checks a file and
writes the dense model (model.json + weights) to a folder, which must not hold an earlier run.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..compress import (dense_bytes, load_compressed, quantized_bytes, read_compressed, save_compressed,
                        share_weights, sparse_bytes)
from ..report import format_bytes
from ..surgery.masks import remove_masks
from ..unstructured import prune_unstructured
from ..workflow import check_output_file, prepare_output_dir
from . import argtypes as T
from .common import CliError, load_model, print_table, save_model


def add_compress_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file or folder (prunekit.save output or a trainer checkpoint folder)")
    p.add_argument("-o", "--out", required=True, help="compressed file to write (.pkz)")
    p.add_argument("--sparsity", type=T.fraction, default=None,
                   help="prune this fraction of every conv/linear weight by magnitude first (default: keep zeros)")
    p.add_argument("--bits-conv", type=T.bits_or_off, default=8,
                   help="weight-sharing bits for conv layers, 1..16 (0: no sharing)")
    p.add_argument("--bits-linear", type=T.bits_or_off, default=5,
                   help="weight-sharing bits for linear layers, 1..16 (0: none)")
    p.add_argument("--kmeans-iters", type=T.positive_int, default=100, help="Lloyd iterations per layer (>= 1)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def add_decompress_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="compressed model file (.pkz)")
    p.add_argument("-o", "--out", default=None, help="folder to write the dense model to (default: only check)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier model in the folder")


def cmd_compress(args: argparse.Namespace) -> int:
    out = check_output_file(Path(args.out), overwrite=args.overwrite, protect=[args.model], flag="--out")
    model = load_model(args.model)
    dense = dense_bytes(model)
    if args.sparsity is not None:
        prune_unstructured(model, args.sparsity, "magnitude", scope="layer")
        remove_masks(model)
    rows = [("dense float32", format_bytes(dense)), ("pruned sparse", _ratio(sparse_bytes(model), dense))]
    bits = {k: b for k, b in (("conv", args.bits_conv), ("linear", args.bits_linear)) if b > 0}
    if bits:
        share_weights(model, bits, iters=args.kmeans_iters)
        rows.append(("quantized", _ratio(quantized_bytes(model), dense)))
    info = save_compressed(model, out, overwrite=args.overwrite)
    rows.append(("file (Huffman)", _ratio(info.file_bytes, dense)))
    print_table(f"prunekit compress -> {out}", rows)
    return 0


def _ratio(n: int, dense: int) -> str:
    return f"{format_bytes(n)}  ({dense / n:.1f}x)"


def cmd_decompress(args: argparse.Namespace) -> int:
    cf = read_compressed(args.file)   # checksum and structure are verified here
    shared = sum(1 for t in cf.tensors if t["encoding"] == "shared")
    rows = [("file", format_bytes(cf.file_bytes)), ("model", str(cf.description)),
            ("tensors", f"{len(cf.tensors)} ({shared} shared, {len(cf.tensors) - shared} raw)"),
            ("checksum", "ok")]
    if args.out is not None:
        if not cf.description:
            raise CliError(f"{args.file} has no model description; it can only be loaded into a given model")
        out = prepare_output_dir(Path(args.out), overwrite=args.overwrite, protect_files=[args.file], flag="--out")
        model = load_compressed(args.file)
        written = save_model(model, out)
        rows.append(("written", ", ".join(str(p) for p in written)))
    print_table(f"prunekit decompress {args.file}", rows)
    return 0
