"""A tiny end-to-end ``mghft`` run (every row, tiny text encoder, seconds)."""

import torch

from polymodal.affect.stickers.recipe import ROWS, MGHFTConfig, run_mghft
from polymodal.core.runs import Run


def test_tiny_end_to_end_run(tmp_path):
    torch.set_num_threads(1)
    cfg = MGHFTConfig(n_samples=42, epochs=1, batch_size=8, text_encoder="tiny", embed_dim=32, fusion_dim=16,
                      fusion_heads=2, fusion_mlp=32, threads=1)
    run = Run.create(tmp_path / "run", "mghft", cfg.model_dump(mode="json"))
    res = run_mghft(cfg, run)
    assert set(res.rows) == set(ROWS)
    for m in res.rows.values():
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["macro_f1"] <= 1 and 0 <= m["weighted_f1"] <= 1
    assert len(res.extra["confusion"]["mghft"]) == 7
    again = run_mghft(cfg, run)  # finished rows resume from their checkpoints
    assert again.rows == res.rows
