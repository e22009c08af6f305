"""Federated learning family: engine, partitions, robust aggregation, attacks, algorithms."""
