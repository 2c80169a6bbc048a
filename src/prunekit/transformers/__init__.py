"""Transformers and LLMs: the block-by-block calibration engine, Wanda / SparseGPT / magnitude masks,
FLAP-like structured width pruning, depth pruning by block influence, distillation, metrics, and the glue for
Hugging Face models (``prunekit.transformers.hf``). The transformers library is imported only where a
function needs it."""
from .calibration import LinearStats, find_blocks, full_forward_stats, run_blocks
from .depth import DepthConfig, block_influence, prune_depth, remove_blocks
from .distill import DistillConfig, distill
from .metrics import embedding_agreement, perplexity, sentence_embeddings
from .sparse import MagnitudeConfig, SparseGPTConfig, WandaConfig, prune_sparse
from .structured import StructuredConfig, prune_structured

__all__ = ["DepthConfig", "DistillConfig", "LinearStats", "MagnitudeConfig", "SparseGPTConfig", "StructuredConfig",
           "WandaConfig", "block_influence", "distill", "embedding_agreement", "find_blocks", "full_forward_stats",
           "perplexity", "prune_depth", "prune_sparse", "prune_structured", "remove_blocks", "run_blocks",
           "sentence_embeddings"]
