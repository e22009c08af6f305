"""Federated algorithms, one file each (server + client logic)."""

from polymodal.federated.algorithms.byrd_nafl import ByrdNAFL

__all__ = ["ByrdNAFL"]
