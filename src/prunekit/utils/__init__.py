"""Small helpers with no prunekit dependencies: atomic file writes and checksums."""
from .checksum import tensors_digest
from .fileio import atomic_write

__all__ = ["atomic_write", "tensors_digest"]
