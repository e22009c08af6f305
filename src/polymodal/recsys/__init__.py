"""Recommendation family: graph collaborative filtering (NLGCL and its baselines) and
multimodal user initialisation (SG-URInit). Spec: ``../shared/specs/recsys.md``."""
