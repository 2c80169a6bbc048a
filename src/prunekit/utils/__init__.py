"""Small helpers with no prunekit dependencies: atomic file writes and checksums."""
from .checksum import object_digest, tensors_digest
from .fileio import atomic_write

__all__ = ["atomic_write", "object_digest", "tensors_digest"]
