"""`prunekit compress` / `prunekit decompress`: a model to a compressed file (FORMAT.md) and back.

`compress` optionally prunes (magnitude, per layer) and shares weights (k-means, bits per layer type), then
writes the file; for the full Deep Compression pipeline with retraining use
`prunekit.methods.deep_compression` (or `benchmarks/deep_compression.py`). `decompress` checks a file and
writes the dense model (model.json + weights) to a folder. Top-level imports stay light.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def add_compress_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file or folder (prunekit.save output or a trainer checkpoint folder)")
    p.add_argument("-o", "--out", required=True, help="compressed file to write (.pkz)")
    p.add_argument("--sparsity", type=float, default=None,
                   help="prune this fraction of every conv/linear weight by magnitude first (default: keep zeros)")
    p.add_argument("--bits-conv", type=int, default=8, help="weight-sharing bits for conv layers (0: no sharing)")
    p.add_argument("--bits-linear", type=int, default=5, help="weight-sharing bits for linear layers (0: none)")
    p.add_argument("--kmeans-iters", type=int, default=100, help="Lloyd iterations per layer")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def add_decompress_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="compressed model file (.pkz)")
    p.add_argument("-o", "--out", default=None, help="folder to write the dense model to (default: only check)")


def cmd_compress(args: argparse.Namespace) -> int:
    from prunekit.cli import load_model, print_table
    from prunekit.compress import dense_bytes, quantized_bytes, save_compressed, share_weights, sparse_bytes
    from prunekit.report import format_bytes
    from prunekit.surgery.masks import remove_masks
    from prunekit.unstructured import prune_unstructured

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
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
    from prunekit.report import format_bytes
    return f"{format_bytes(n)}  ({dense / n:.1f}x)"


def cmd_decompress(args: argparse.Namespace) -> int:
    from prunekit.cli import CliError, print_table, save_model
    from prunekit.compress import load_compressed, read_compressed
    from prunekit.report import format_bytes

    cf = read_compressed(args.file)   # checksum and structure are verified here
    shared = sum(1 for t in cf.tensors if t["encoding"] == "shared")
    rows = [("file", format_bytes(cf.file_bytes)), ("model", str(cf.description)),
            ("tensors", f"{len(cf.tensors)} ({shared} shared, {len(cf.tensors) - shared} raw)"),
            ("checksum", "ok")]
    if args.out is not None:
        if not cf.description:
            raise CliError(f"{args.file} has no model description; it can only be loaded into a given model")
        model = load_compressed(args.file)
        written = save_model(model, Path(args.out))
        rows.append(("written", ", ".join(str(p) for p in written)))
    print_table(f"prunekit decompress {args.file}", rows)
    return 0


# the names prunekit.cli looks for (`prunekit.cli_cmds.<name>`: add_arguments / run)
add_arguments = add_compress_arguments
run = cmd_compress
