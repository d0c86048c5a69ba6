"""A tiny GGUF file written with the ``gguf`` package from a tiny random Llama, as llama.cpp's
converter writes one: the llama architecture's metadata and tensor names, Q and K rows permuted for
its rotary layout, a byte-level BPE vocabulary (``tokenizer.ggml.model = gpt2``, as SmolLM2's), the
matrices in F32 or quantized by gguf's own quantizer (Q8_0, ...), the norms in F32.

The PyTorch model it was written from is saved beside it, so a test can compare what transformers
dequantises with the weights that went in."""

from __future__ import annotations

from pathlib import Path

# the tiny Llama: head size 16 (onnxruntime-genai's GroupQueryAttention takes multiples of 16), every
# matrix row a multiple of 32 (a Q8_0 block)
CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=True)
MERGES = [("Ġ", "t"), ("t", "h"), ("Ġt", "h"), ("e", "r"), ("i", "n"), ("Ġ", "a"), ("o", "n"), ("r", "e")]
SPECIAL = ["<|endoftext|>"]  # beginning and end of a text, as SmolLM2's


def byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode table: the 256 symbols of a byte-level BPE vocabulary, in byte order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(printable, codes))
    return [chr(table[b]) for b in range(256)]


def vocabulary() -> list[str]:
    return list(dict.fromkeys(SPECIAL + byte_symbols() + [a + b for a, b in MERGES]))


def permute(weights, heads: int):
    """llama.cpp's converter's row order for Q and K (transformers' GGUF loader undoes it)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_tiny_gguf(folder: Path, quant: str = "Q8_0", seed: int = 0) -> Path:
    """Write ``folder/tiny-llama.<quant>.gguf`` (and the PyTorch model it came from in
    ``folder/source``); ``quant``: F32 or a type gguf's quantizer makes (Q8_0, Q4_0, ...)."""
    import gguf
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = vocabulary()
    config = LlamaConfig(vocab_size=len(tokens), bos_token_id=0, eos_token_id=0, **CONFIG)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    folder = Path(folder)
    model.save_pretrained(folder / "source", safe_serialization=True)

    path = folder / f"tiny-llama.{quant}.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if quant == "F32" else getattr(gguf.LlamaFileType, f"MOSTLY_{quant}"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIAL else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([f"{a} {b}" for a, b in MERGES])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(False)

    kind = getattr(gguf.GGMLQuantizationType, quant)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}

    def add(name: str, tensor) -> None:
        data = tensor.detach().float().numpy().astype(np.float32)
        if data.ndim == 2 and quant != "F32":  # the matrices quantized, the norms kept in F32
            writer.add_tensor(name, gguf.quants.quantize(data, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, data)

    state = model.state_dict()
    add("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(config.num_hidden_layers):
        for hf, ours in names.items():
            weight = state[f"model.layers.{i}.{hf}.weight"]
            if hf == "self_attn.q_proj":
                weight = permute(weight, config.num_attention_heads)
            elif hf == "self_attn.k_proj":
                weight = permute(weight, config.num_key_value_heads)
            add(f"blk.{i}.{ours}.weight", weight)
    add("output_norm.weight", state["model.norm.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
