"""Shared machinery: recipe registry, configs, runs, reports, dataset cache, progress bars."""
