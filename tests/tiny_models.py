"""Tiny random-weight language models for fast tests of code that needs a real ``TransformersBackend`` (log-probs,
chat template) without loading SmolLM2: a word-level tokenizer over the given words and a 1-layer Llama."""

from __future__ import annotations

from collections.abc import Sequence


def word_level_llama(words: Sequence[str], *, max_positions: int = 256, seed: int = 0, name: str = "tiny-llama"):
    """A ``TransformersBackend`` over a 1-layer, 16-wide random Llama whose vocabulary is ``words`` (plus the
    special tokens); unknown words map to ``<unk>``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from polymodal.llm import TransformersBackend

    vocab: dict[str, int] = {}
    for w in ("<unk>", "<pad>", "<s>", *words):
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="<pad>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=max_positions,
                      pad_token_id=1)
    return TransformersBackend(LlamaForCausalLM(cfg).eval(), tok, name=name)
