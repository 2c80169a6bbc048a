"""Text for calibration, distillation and language-model metrics.

Entries come from Debian's ``fortunes`` files (quotations separated by lines holding ``%``) or from a folder
of ``.txt`` files (paragraphs separated by blank lines). They are split by a seeded permutation into
calibration / train / held-out entries, and tokenised with the model's own tokenizer: packed into fixed-length
windows (no padding, as the calibration papers do) or padded per sentence (for sentence embeddings).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from .base import DataFormatError, DataNotFoundError

FORTUNES_DIRS = ("/usr/share/games/fortunes", "/usr/share/fortunes", "/usr/local/share/games/fortunes")
TEXT_DATASETS = ("fortunes", "textfolder")
_SKIP_SUFFIXES = (".dat", ".u8", ".gz", ".sh")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class TextSplits:
    """Disjoint calibration / train / held-out entries of one text source."""

    calibration: list[str]
    train: list[str]
    heldout: list[str]
    source: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "seed": self.seed, "calibration": len(self.calibration),
                "train": len(self.train), "heldout": len(self.heldout)}


def _normalise(entry: str) -> str:
    return _SPACE.sub(" ", entry).strip()


def _fortune_files(root: Path, offensive: bool) -> list[Path]:
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix not in _SKIP_SUFFIXES)
    if offensive and (root / "off").is_dir():
        files += _fortune_files(root / "off", False)
    return files


def read_fortunes(root: str | Path, offensive: bool = False) -> list[str]:
    """Every entry of the fortunes files in ``root`` (``.dat``/``.u8`` indexes skipped; ``off/`` only
    with ``offensive=True``), whitespace-normalised, in file-name order."""
    out: list[str] = []
    for path in _fortune_files(Path(root), offensive):
        text = path.read_bytes().decode("utf-8", errors="replace")
        out += [_normalise(e) for e in re.split(r"(?m)^%\s*$", text)]
    return [e for e in out if e]


def read_text_folder(root: str | Path) -> list[str]:
    """Paragraphs (blank-line separated) of every ``*.txt`` file under ``root``, in path order."""
    files = sorted(Path(root).rglob("*.txt"))
    if not files:
        raise DataNotFoundError(f"text folder {root}: no .txt files found under it")
    out: list[str] = []
    for path in files:
        out += [_normalise(p) for p in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace"))]
    return [e for e in out if e]


def resolve_source(source: str | Path | None = None) -> tuple[str, Path]:
    """(kind, path) of a text source: ``"fortunes"`` (searched in ``$PRUNEKIT_FORTUNES`` and the Debian
    paths), a fortunes-style folder named ``fortunes:<dir>``, or a folder of ``.txt`` files. ``None`` means
    ``$PRUNEKIT_TEXT`` if set, else fortunes. Raises DataNotFoundError naming every place searched."""
    if source is None:
        source = os.environ.get("PRUNEKIT_TEXT") or "fortunes"
    text = str(source)
    if text == "fortunes":
        places = [p for p in (os.environ.get("PRUNEKIT_FORTUNES"), *FORTUNES_DIRS) if p]
        for place in places:
            if Path(place).is_dir() and _fortune_files(Path(place), False):
                return "fortunes", Path(place)
        raise DataNotFoundError("fortunes text not found; searched: " + ", ".join(places)
                                + " (install Debian's 'fortunes' package or pass a folder of .txt files)")
    if text.startswith("fortunes:"):
        path = Path(text.partition(":")[2])
        if not path.is_dir():
            raise DataNotFoundError(f"fortunes folder {path} does not exist")
        return "fortunes", path
    path = Path(text)
    if not path.is_dir():
        raise DataNotFoundError(f"text source {text!r}: not 'fortunes', 'fortunes:<dir>' or an existing folder "
                                f"of .txt files (searched {path.resolve()})")
    return "textfolder", path


def read_entries(source: str | Path | None = None, offensive: bool = False, min_chars: int = 16,
                 max_chars: int = 600) -> list[str]:
    """The distinct entries of a text source whose length lies in [min_chars, max_chars], in source order."""
    kind, path = resolve_source(source)
    entries = read_fortunes(path, offensive) if kind == "fortunes" else read_text_folder(path)
    seen: set[str] = set()
    out = []
    for e in entries:
        if min_chars <= len(e) <= max_chars and e not in seen:
            seen.add(e)
            out.append(e)
    return out


def load_text(source: str | Path | None = None, calibration: int = 256, heldout: int = 512, seed: int = 0,
              offensive: bool = False, min_chars: int = 16, max_chars: int = 600) -> TextSplits:
    """Split a text source into calibration / train / held-out entries by a permutation seeded with ``seed``.

    Args:
        source: ``"fortunes"``, ``"fortunes:<dir>"`` or a folder of ``.txt`` files (see resolve_source).
        calibration: entries in the calibration split.
        heldout: entries in the held-out split (metrics); train is everything else.
        seed: the permutation's seed; same seed and source give the same splits.
        offensive: include the fortunes ``off/`` folder.
        min_chars, max_chars: entries outside this length are dropped before splitting.

    Returns:
        TextSplits with disjoint lists.

    Example:
        >>> splits = load_text("fortunes", calibration=128, heldout=256, seed=0)
    """
    if calibration < 0 or heldout < 0:
        raise ValueError(f"calibration and heldout must be >= 0, got {calibration} and {heldout}")
    entries = read_entries(source, offensive, min_chars, max_chars)
    if calibration + heldout > len(entries):
        raise DataFormatError(f"text source {source or 'fortunes'}: {len(entries)} usable entries, fewer than "
                              f"calibration + heldout = {calibration + heldout}")
    perm = torch.randperm(len(entries), generator=torch.Generator().manual_seed(seed)).tolist()
    pick = lambda idx: [entries[i] for i in idx]  # noqa: E731
    return TextSplits(pick(perm[:calibration]), pick(perm[calibration + heldout:]),
                      pick(perm[calibration:calibration + heldout]), str(source or "fortunes"), seed)


def load_tokenizer(path: str | Path):
    """The tokenizer saved with a model (``transformers.AutoTokenizer`` from a local folder, no network)."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise DataNotFoundError(f"tokenizer folder {path} does not exist")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids the tokenizer puts before and after a single text (``[CLS]``/``[SEP]``, ``<s>``, ...),
    read off how it encodes a one-word text."""
    word = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for p in range(len(full) - len(word) + 1):
        if full[p:p + len(word)] == word:
            return full[:p], full[p + len(word):]
    raise DataFormatError(f"{type(tokenizer).__name__}: cannot locate a text's tokens among its special tokens")


def token_windows(tokenizer, texts: Sequence[str], seq_len: int, count: int | None = None) -> torch.Tensor:
    """Pack ``texts`` into ``[count, seq_len]`` token windows without padding.

    The texts are tokenised without special tokens, joined with the tokenizer's separator (``sep`` or ``eos``
    token when it has one) and cut into consecutive chunks; each chunk gets the model's special tokens
    (e.g. ``[CLS] ... [SEP]`` for BERT). Raises DataFormatError when the text is too short for ``count``.
    """
    head, tail = special_tokens(tokenizer)
    n_special = len(head) + len(tail)
    body = seq_len - n_special
    if body <= 0:
        raise ValueError(f"seq_len={seq_len} leaves no room next to {n_special} special tokens")
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    ids: list[int] = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"]
        if sep is not None:
            ids.append(sep)
        if count is not None and len(ids) >= count * body:
            break
    n = len(ids) // body if count is None else count
    if n == 0 or n * body > len(ids):
        raise DataFormatError(f"{len(texts)} texts give {len(ids)} tokens, fewer than {max(n, 1)} windows of "
                              f"{body} tokens")
    rows = [head + ids[i * body:(i + 1) * body] + tail for i in range(n)]
    return torch.tensor(rows, dtype=torch.long)


def encode_sentences(tokenizer, texts: Sequence[str], max_length: int = 64) -> dict[str, torch.Tensor]:
    """Padded, truncated encodings of single sentences: ``input_ids``, ``attention_mask`` (and the other
    tensors the tokenizer returns), as the model's forward takes them."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt")
    return {k: v for k, v in enc.items()}


def window_batches(windows: torch.Tensor, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """Model inputs (``input_ids`` + an all-ones ``attention_mask``) in batches of ``batch_size`` windows."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return [{"input_ids": w, "attention_mask": torch.ones_like(w)} for w in windows.split(batch_size)]


__all__ = ["FORTUNES_DIRS", "TEXT_DATASETS", "TextSplits", "encode_sentences", "load_text", "load_tokenizer",
           "read_entries", "read_fortunes", "read_text_folder", "resolve_source", "token_windows",
           "window_batches"]
