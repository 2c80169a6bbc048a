"""Deep Compression storage: k-means weight sharing, Huffman coding and the compressed file format."""
from prunekit.compress.container import (
    HEADER_SIZE, MAGIC, VERSION, CompressedFile, CompressedFileError, SaveInfo, build_model, is_compressed,
    load_compressed, read_compressed, save_compressed,
)
from prunekit.compress.huffman import HuffmanError, HuffmanTable
from prunekit.compress.kmeans import KMeansResult, kmeans_1d
from prunekit.compress.sharing import (
    SharingInfo, WeightSharing, codebooks, plain_state_dict, share_weights, unshare_weights,
)
from prunekit.compress.sizes import (
    DEFAULT_INDEX_BITS, StageSize, dense_bytes, filler_count, quantized_bytes, relative_gaps, sparse_bytes,
)

__all__ = [
    "HEADER_SIZE", "MAGIC", "VERSION", "CompressedFile", "CompressedFileError", "SaveInfo", "build_model",
    "is_compressed", "load_compressed", "read_compressed", "save_compressed", "HuffmanError", "HuffmanTable", "KMeansResult",
    "kmeans_1d", "SharingInfo", "WeightSharing", "codebooks", "plain_state_dict", "share_weights",
    "unshare_weights", "DEFAULT_INDEX_BITS", "StageSize", "dense_bytes", "filler_count", "quantized_bytes",
    "relative_gaps", "sparse_bytes",
]
