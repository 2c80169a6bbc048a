"""Tracing and channel groups."""
from .groups import ChannelGroup, DependencyGraph, Member
from .trace import UnsupportedOpError

__all__ = ["ChannelGroup", "DependencyGraph", "Member", "UnsupportedOpError"]
