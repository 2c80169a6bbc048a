"""Tiny Hugging Face transformers models built from config objects (random init, no downloads).

The engine's tests and its coverage benchmark run the same list: encoders, decoders with grouped-query
attention, encoder-decoders (T5 with its relative attention bias, Whisper), vision transformers and
ConvNeXt with its channels-first LayerNorm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class HFCase:
    """One tiny model of the zoo: how to build it and what to feed it.

    name: short identifier. build: returns the model (random init, eval mode). inputs: returns the example
    inputs as a keyword dict. generates: whether the model has `generate` (decoders, encoder-decoders).
    """

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], dict[str, Any]]
    generates: bool = False
    tags: list[str] = field(default_factory=list)


def _ids(vocab: int, length: int = 8, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (1, length), generator=gen)


def _pixels(size: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, size, size, generator=gen)


def _make(config_cls: str, model_cls: str, **cfg) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, config_cls)(**cfg)
        return getattr(transformers, model_cls)(config).eval()

    build.__qualname__ = f"build_{model_cls}"
    return build


_DEC = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            tie_word_embeddings=False)
_BERT = dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=64, num_labels=3)


def tiny_zoo() -> list[HFCase]:
    """The tiny Hugging Face models prunekit's engine is tested on, one per architecture family.

    Returns:
        A list of HFCase; each `build()` makes a fresh random model, `inputs()` its example inputs.

    Example:
        >>> case = tiny_zoo()[0]
        >>> model, inputs = case.build(), case.inputs()
        >>> out = model(**inputs)
    """
    ids = lambda: {"input_ids": _ids(96)}  # noqa: E731
    seq2seq = lambda: {"input_ids": _ids(96), "decoder_input_ids": _ids(96, 4, seed=1)}  # noqa: E731
    return [
        HFCase("bert", _make("BertConfig", "BertForSequenceClassification", **_BERT), ids, tags=["encoder"]),
        HFCase("roberta", _make("RobertaConfig", "RobertaForSequenceClassification", **{**_BERT, "pad_token_id": 1}),
               ids, tags=["encoder"]),
        HFCase("distilbert", _make("DistilBertConfig", "DistilBertForSequenceClassification", vocab_size=96,
                                   dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64,
                                   num_labels=3), ids, tags=["encoder"]),
        HFCase("gpt2", _make("GPT2Config", "GPT2LMHeadModel", vocab_size=96, n_embd=64, n_layer=2, n_head=4,
                             n_positions=64, bos_token_id=1, eos_token_id=2), ids, generates=True,
               tags=["decoder", "conv1d"]),
        HFCase("llama", _make("LlamaConfig", "LlamaForCausalLM", **_DEC), ids, generates=True,
               tags=["decoder", "gqa"]),
        HFCase("qwen2", _make("Qwen2Config", "Qwen2ForCausalLM", **_DEC), ids, generates=True,
               tags=["decoder", "gqa"]),
        HFCase("mistral", _make("MistralConfig", "MistralForCausalLM", **_DEC, sliding_window=None), ids,
               generates=True, tags=["decoder", "gqa"]),
        HFCase("mixtral", _make("MixtralConfig", "MixtralForCausalLM", **_DEC, num_local_experts=4,
                                num_experts_per_tok=2), ids, generates=True, tags=["decoder", "gqa", "moe"]),
        HFCase("opt", _make("OPTConfig", "OPTForCausalLM", vocab_size=96, hidden_size=64, ffn_dim=128,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
                            word_embed_proj_dim=64, pad_token_id=0, bos_token_id=1, eos_token_id=2), ids,
               generates=True, tags=["decoder"]),
        HFCase("t5", _make("T5Config", "T5ForConditionalGeneration", vocab_size=96, d_model=64, d_kv=16, d_ff=128,
                           num_layers=2, num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=8,
                           decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, tie_word_embeddings=False),
               seq2seq, generates=True, tags=["seq2seq", "relative-bias"]),
        HFCase("whisper", _make("WhisperConfig", "WhisperForConditionalGeneration", vocab_size=96, d_model=64,
                                encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                num_mel_bins=16, max_source_positions=16, max_target_positions=32,
                                pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                                suppress_tokens=None, begin_suppress_tokens=None),
               lambda: {"input_features": _pixels(32, 16)[:, :, 0].reshape(1, 16, 32),
                        "decoder_input_ids": torch.tensor([[1, 5, 6, 7]])},
               generates=True, tags=["seq2seq", "audio"]),
        HFCase("vit", _make("ViTConfig", "ViTForImageClassification", image_size=32, patch_size=8, hidden_size=64,
                            num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=5),
               lambda: {"pixel_values": _pixels(32)}, tags=["vision"]),
        HFCase("convnext", _make("ConvNextConfig", "ConvNextForImageClassification", hidden_sizes=[16, 32, 48, 64],
                                 depths=[1, 1, 1, 1], num_labels=5, image_size=64),
               lambda: {"pixel_values": _pixels(64)}, tags=["vision", "channels-first-norm"]),
        HFCase("convnextv2", _make("ConvNextV2Config", "ConvNextV2ForImageClassification",
                                   hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_labels=5, image_size=64),
               lambda: {"pixel_values": _pixels(64)}, tags=["vision", "channels-first-norm", "grn"]),
        HFCase("resnet", _make("ResNetConfig", "ResNetForImageClassification", embedding_size=16,
                               hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_labels=5),
               lambda: {"pixel_values": _pixels(64)}, tags=["vision"]),
    ]


def zoo_case(name: str) -> HFCase:
    """The zoo entry called `name` (see `tiny_zoo`)."""
    cases = {c.name: c for c in tiny_zoo()}
    if name not in cases:
        raise KeyError(f"no tiny Hugging Face model {name!r}; choose from {sorted(cases)}")
    return cases[name]


_LM = dict(vocab_size=96, num_hidden_layers=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
           eos_token_id=2)
_SEQ2SEQ = dict(vocab_size=96, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
_WIDTHS = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128)


def _auto(model_type: str, model_cls: str, **cfg) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        torch.manual_seed(0)
        return getattr(transformers, model_cls)(transformers.AutoConfig.for_model(model_type, **cfg)).eval()

    build.__qualname__ = f"build_{model_cls}"
    return build


def extended_zoo() -> list[HFCase]:
    """More architecture families (one tiny model each, default settings otherwise): the engine's wider HF check.

    Returns:
        A list of HFCase, as `tiny_zoo`.
    """
    ids = lambda: {"input_ids": _ids(96)}  # noqa: E731
    seq2seq = lambda: {"input_ids": _ids(96), "decoder_input_ids": _ids(96, 4, seed=1)}  # noqa: E731
    img = lambda: {"pixel_values": _pixels(32)}  # noqa: E731
    gqa = dict(**_LM, **_WIDTHS, num_key_value_heads=2)
    lm = [("gemma", "GemmaForCausalLM", dict(gqa, head_dim=16)), ("phi3", "Phi3ForCausalLM", gqa),
          ("phi", "PhiForCausalLM", dict(_LM, **_WIDTHS)), ("falcon", "FalconForCausalLM", dict(_LM, **_WIDTHS)),
          ("gpt_neox", "GPTNeoXForCausalLM", dict(_LM, **_WIDTHS)),
          ("bloom", "BloomForCausalLM", dict(_LM, hidden_size=64, n_head=4)),
          ("gptj", "GPTJForCausalLM", dict(_LM, n_embd=64, n_head=4, rotary_dim=8, n_positions=64)),
          ("starcoder2", "Starcoder2ForCausalLM", gqa), ("granite", "GraniteForCausalLM", gqa),
          ("olmo", "OlmoForCausalLM", gqa), ("stablelm", "StableLmForCausalLM", gqa),
          ("gpt_bigcode", "GPTBigCodeForCausalLM", dict(_LM, n_embd=64, n_head=4, multi_query=True, n_positions=64)),
          ("codegen", "CodeGenForCausalLM", dict(_LM, n_embd=64, n_head=4, rotary_dim=8, n_ctx=64, n_positions=64)),
          ("mpt", "MptForCausalLM", dict(vocab_size=96, d_model=64, n_heads=4, n_layers=2, expansion_ratio=2,
                                         max_seq_len=64, pad_token_id=0, bos_token_id=1, eos_token_id=2))]
    cases = [HFCase(t, _auto(t, cls, **cfg), ids, generates=True, tags=["decoder"]) for t, cls, cfg in lm]
    cases += [HFCase(t, _auto(t, cls, **_SEQ2SEQ), seq2seq, generates=True, tags=["seq2seq"])
              for t, cls in [("bart", "BartForConditionalGeneration"), ("mbart", "MBartForConditionalGeneration")]]
    enc = dict(vocab_size=96, num_hidden_layers=2, max_position_embeddings=64, num_labels=3, **_WIDTHS)
    cases += [HFCase("electra", _auto("electra", "ElectraForSequenceClassification", **enc, embedding_size=64), ids,
                     tags=["encoder"]),
              HFCase("albert", _auto("albert", "AlbertForSequenceClassification", **enc, embedding_size=32), ids,
                     tags=["encoder"])]
    vit = dict(image_size=32, patch_size=8, num_hidden_layers=2, num_labels=5, **_WIDTHS)
    cases += [HFCase("deit", _auto("deit", "DeiTForImageClassification", **vit), img, tags=["vision"]),
              HFCase("clip_vision_model", _auto("clip_vision_model", "CLIPVisionModel", image_size=32, patch_size=8,
                                                num_hidden_layers=2, **_WIDTHS), img, tags=["vision"]),
              HFCase("swin", _auto("swin", "SwinForImageClassification", image_size=32, patch_size=4, embed_dim=16,
                                   depths=[1, 1], num_heads=[2, 4], window_size=4, num_labels=5), img,
                     tags=["vision"])]
    return cases
