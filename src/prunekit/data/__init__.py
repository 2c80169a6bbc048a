"""Data sets and loaders: Fashion-MNIST (IDX), scikit-learn digits, CIFAR-10 (python batches) and
ImageFolder trees, behind one entry point."""
from .api import (DATASETS, Loaders, canonical_name, dataset_info, get_dataset, get_loaders, list_datasets,
                  make_loader)
from .base import (BatchedImageDataset, DataError, DataFormatError, DataNotFoundError, DatasetInfo,
                   TensorImageDataset, collate_batched, random_crop_flip)
from .idx import parse_idx, read_idx
from .text import TEXT_DATASETS, TextSplits, load_text

__all__ = [
    "DATASETS", "Loaders", "canonical_name", "dataset_info", "get_dataset", "get_loaders", "list_datasets",
    "make_loader", "BatchedImageDataset", "DataError", "DataFormatError", "DataNotFoundError", "DatasetInfo",
    "TensorImageDataset", "collate_batched", "random_crop_flip", "parse_idx", "read_idx",
    "TEXT_DATASETS", "TextSplits", "load_text",
]
