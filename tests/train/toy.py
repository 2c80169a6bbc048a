"""Toy data and model shared by the training tests."""
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_data(n: int = 256, features: int = 12, classes: int = 4, seed: int = 0) -> TensorDataset:
    """A linearly separable toy problem: the label is the argmax of a fixed random projection."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, classes, generator=g)
    return TensorDataset(x, (x @ w).argmax(dim=1))


def make_model(seed: int = 0, features: int = 12, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(32, classes))


def make_loader(ds: TensorDataset, batch_size: int = 32, seed: int = 0) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))

