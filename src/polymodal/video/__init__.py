"""Video family: Dual-Teacher KD, Audio-Assisted TTA and OVG-HQ online video grounding (see docs/methods/)."""
