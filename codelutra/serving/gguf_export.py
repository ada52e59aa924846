"""Write a Hugging Face Llama-architecture model as one GGUF file, for llama.cpp's server and Ollama.

Follows llama.cpp's `convert_hf_to_gguf.py` for the architectures users bring to codelutra:
Llama (SmolLM2, Llama 2/3 with a BPE tokenizer) and Qwen2. Tensor names come from the `gguf`
package's own name map. Llama's Q and K projections are permuted from Hugging Face's rotary layout
(the two halves of each head) to GGML's (interleaved pairs); Qwen2 uses GGML's NeoX rotary and needs
none. One-dimensional tensors (norms, biases) stay float32, as llama.cpp writes them.
The tokenizer goes in as llama.cpp's "gpt2" (byte-level BPE) vocabulary: tokens, token types,
merges, special token ids and the chat template, plus the pre-tokenizer name llama.cpp reads from
the hash of a fixed text's token ids, exactly as the converter identifies it.
"""

from __future__ import annotations

import json
import os
from hashlib import sha256
from pathlib import Path

import gguf
import numpy as np

from codelutra.errors import UserError

# Hugging Face architecture -> (GGUF architecture, whether Q/K need llama's rotary permutation)
ARCHITECTURES = {
    "LlamaForCausalLM": (gguf.MODEL_ARCH.LLAMA, True),
    "Qwen2ForCausalLM": (gguf.MODEL_ARCH.QWEN2, False),
}
TENSOR_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}

# llama.cpp's `get_vocab_base_pre`: this text's token ids, hashed, name the pre-tokenizer.
_PRE_TOKENIZER_PROBE = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f "
    "(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 "
    "3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 "
    "?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435\u0449\u043e \u043d\u0430 "
    "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told "
    "he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_PRE_TOKENIZERS = {  # hash -> llama.cpp's name, for the tokenizers of the architectures above
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5, Qwen2, Qwen2.5
}
Q8_0_BLOCK = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]


def write_gguf(model_dir: Path, out: Path, tensor_type: str = "f16") -> None:
    """Write the model in `model_dir` to `out` (atomically: a temporary file renamed into place)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    architecture = (config.architectures or ["?"])[0]
    if architecture not in ARCHITECTURES:
        raise UserError(f"--model {model_dir}: {architecture} models cannot be exported to GGUF here; "
                        f"supported: {', '.join(ARCHITECTURES)}")
    arch, permute_qk = ARCHITECTURES[architecture]
    rope = getattr(config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": config.rope_theta}
    if rope.get("rope_type", "default") != "default":
        raise UserError(f"--model {model_dir}: rope scaling {rope['rope_type']!r} is not supported by the GGUF export")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    qtype, file_type = TENSOR_TYPES[tensor_type]
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads

    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[arch])
    try:
        writer.add_name(model_dir.parent.name if model_dir.name == "model" else model_dir.name)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_rope_freq_base(float(rope["rope_theta"]))
        writer.add_rope_dimension_count(head_dim)
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, tokenizer, model_dir, config.vocab_size)

        names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
        for name, tensor in model.state_dict().items():
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue  # llama.cpp reuses token_embd where output.weight is absent
            gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if gguf_name is None:
                raise UserError(f"--model {model_dir}: no GGUF name for tensor {name}")
            data = tensor.numpy()
            if permute_qk and name.endswith("q_proj.weight"):
                data = _permute(data, heads, heads)
            elif permute_qk and name.endswith("k_proj.weight"):
                data = _permute(data, heads, kv_heads)
            _add_tensor(writer, gguf_name, data, qtype, tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)


def _permute(weights: np.ndarray, heads: int, kv_heads: int) -> np.ndarray:
    """llama.cpp's `LlamaModel.permute`: per head, rows (half 1, half 2) -> interleaved pairs."""
    if kv_heads != heads:
        heads = kv_heads
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _add_tensor(writer: gguf.GGUFWriter, name: str, data: np.ndarray, qtype, tensor_type: str) -> None:
    if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, data.astype(np.float32))
    elif qtype == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(name, data.astype(np.float16))
    else:
        if data.shape[-1] % Q8_0_BLOCK:
            raise UserError(f"--type {tensor_type}: tensor {name} has rows of {data.shape[-1]} values, "
                            f"not a multiple of q8_0's block of {Q8_0_BLOCK}; use --type f16")
        writer.add_tensor(name, gguf.quants.quantize(data.astype(np.float32), qtype), raw_dtype=qtype)


def _add_tokenizer(writer: gguf.GGUFWriter, tokenizer, model_dir: Path, vocab_size: int) -> None:
    """llama.cpp's byte-level BPE vocabulary ("gpt2"), as its converter's `get_vocab_base` builds it."""
    tokenizer_json = model_dir / "tokenizer.json"
    kind = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["type"] if tokenizer_json.is_file() else None
    if kind != "BPE":
        raise UserError(f"--model {model_dir}: only byte-level BPE tokenizers (tokenizer.json) export to GGUF here, found {kind}")
    probe_hash = sha256(str(tokenizer.encode(_PRE_TOKENIZER_PROBE)).encode()).hexdigest()
    if probe_hash not in _PRE_TOKENIZERS:
        raise UserError(f"--model {model_dir}: llama.cpp does not know this tokenizer's pre-tokenizer (hash {probe_hash})")
    by_id = {token_id: token for token, token_id in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    special = set(tokenizer.all_special_tokens) | {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    tokens, types = [], []
    for token_id in range(vocab_size):
        token = by_id.get(token_id)
        if token is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
        elif token in added:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if token in special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_PRE_TOKENIZERS[probe_hash])
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/unk/pad ids, add_bos and the chat template (chat_template.jinja or tokenizer_config.json).
    special_vocab = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if special_vocab.chat_template is None and tokenizer.chat_template:  # older gguf releases miss chat_template.jinja
        special_vocab.chat_template = tokenizer.chat_template
    special_vocab.add_to_gguf(writer, quiet=True)
