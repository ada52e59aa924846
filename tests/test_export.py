"""`codelutra export`: GGUF files that transformers' GGUF loader reads back to the same logits, and HF folders with a card."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codelutra.cli import main

# Largest logit difference allowed, as a fraction of the largest logit: exact types tight, 8-bit looser.
TOLERANCE = {"f32": 1e-5, "f16": 5e-3, "q8_0": 3e-2}
PROMPT = "SELECT name FROM singer WHERE age > 30 ORDER BY name"


@pytest.fixture(scope="module")
def q8_model_dir(tmp_path_factory) -> str:
    """A 2-layer Llama whose every row length is a multiple of q8_0's block of 32 (the shared tiny model's 16 is not)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from codelutra.models import EMBEDDED_DEFAULT, load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("q8_model")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _round_trip(model_dir: str, out: Path, tensor_type: str) -> float:
    """Export, load back with transformers' GGUF loader, and return the largest relative logit difference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert main(["export", "--model", model_dir, "--format", "gguf", "--type", tensor_type, "--out", str(out)]) == 0
    source = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    loaded = AutoModelForCausalLM.from_pretrained(out.parent, gguf_file=out.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    gguf_tokenizer = AutoTokenizer.from_pretrained(out.parent, gguf_file=out.name)
    assert gguf_tokenizer(PROMPT).input_ids == ids[0].tolist()  # the tokenizer came along too
    with torch.no_grad():
        expected, got = source(ids).logits, loaded(ids).logits
    return float((expected - got).abs().max() / expected.abs().max())


@pytest.mark.parametrize("tensor_type", ["f32", "f16", "q8_0"])
def test_gguf_round_trip_on_a_tiny_llama(tmp_path, q8_model_dir, tensor_type):
    difference = _round_trip(q8_model_dir, tmp_path / f"tiny-{tensor_type}.gguf", tensor_type)
    assert difference <= TOLERANCE[tensor_type]
    if tensor_type != "f32":
        assert difference > 0  # really stored in the smaller type


def test_gguf_round_trip_on_a_tiny_qwen2(tmp_path, q8_model_dir, monkeypatch):
    """Qwen2: biases on Q/K/V, and GGML's NeoX rotary, so no Q/K permutation.

    The test model has SmolLM2's vocabulary (no Qwen tokenizer is available offline), which transformers
    reads with Qwen2's pre-tokenizer: a pairing llama.cpp's table does not list, so it is added here.
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from codelutra.serving import gguf_export

    monkeypatch.setitem(gguf_export._PRE_TOKENIZERS, "a70b913f1e3447c4ebd43024210ebb1f33e860fe7320b66b6eea6c99053643de", "qwen2")

    tokenizer = AutoTokenizer.from_pretrained(q8_model_dir)
    torch.manual_seed(1)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:  # biases start at zero; make them count
            layer.self_attn.q_proj.bias.normal_()
            layer.self_attn.k_proj.bias.normal_()
    model.save_pretrained(tmp_path / "qwen2")
    tokenizer.save_pretrained(tmp_path / "qwen2")
    assert _round_trip(str(tmp_path / "qwen2"), tmp_path / "out" / "qwen2.gguf", "f32") <= TOLERANCE["f32"]


def test_gguf_metadata_for_llama_cpp(tmp_path, q8_model_dir):
    import gguf

    out = tmp_path / "m.gguf"
    assert main(["export", "--model", q8_model_dir, "--format", "gguf", "--type", "q8_0", "--out", str(out)]) == 0
    reader = gguf.GGUFReader(out)
    fields = {name: field.contents() for name, field in reader.fields.items() if name != "tokenizer.ggml.tokens"}
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 2
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "smollm"
    assert "<|im_start|>" in fields["tokenizer.chat_template"] and fields["tokenizer.ggml.eos_token_id"] == 2
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied to token_embd, as llama.cpp expects


def test_q8_0_refuses_rows_that_are_not_whole_blocks(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "tiny.gguf"
    assert main(["export", "--model", tiny_model_dir, "--format", "gguf", "--type", "q8_0", "--out", str(out)]) == 2
    assert "block of 32" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())  # no file, not even a temporary one


def test_export_never_overwrites(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "taken.gguf"
    out.write_text("keep me")
    assert main(["export", "--model", tiny_model_dir, "--format", "gguf", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "keep me"


def test_hf_export_of_a_run_iteration_has_a_model_card(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from codelutra.config import RunConfig, dump_config
    from codelutra.loop.report import markdown_table

    run = tmp_path / "runs" / "demo"
    shutil.copytree(tiny_model_dir, run / "iter_1" / "model")
    (run / "config.yaml").write_text(dump_config(RunConfig(name="demo")))
    history = [{"iteration": 0, "accuracy": 0.0, "n": 100, "counts": {"forbidden": 100}},
               {"iteration": 1, "accuracy": 0.34, "n": 100, "counts": {"correct": 34, "wrong_result": 66},
                "voted": {"candidates": 8, "accuracy": 0.41, "n": 100, "counts": {}}}]
    (run / "report.md").write_text("# codelutra run `demo`\n\n" + markdown_table(history) + "\n![accuracy](accuracy.png)\n")
    out = tmp_path / "export"
    assert main(["export", "--model", str(run / "iter_1"), "--format", "hf", "--out", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "codelutra" in card.split("---")[1]
    assert "# codelutra run `demo`, iter_1" in card
    assert "builtin:train" in card and "loss: codelutra" in card  # data and recipe
    assert "| iteration 1 | 34.0% | 41.0% |" in card  # the run's accuracy table, greedy and voted
    assert "accuracy.png" not in card  # the plot is not copied, so it is not linked
    AutoModelForCausalLM.from_pretrained(out)  # a plain Hugging Face folder


@pytest.mark.e2e
@pytest.mark.parametrize("tensor_type", ["f32", "f16", "q8_0"])
def test_gguf_round_trip_on_smollm2(tmp_path, tensor_type):
    from codelutra.models import EMBEDDED_DEFAULT, resolve_model

    difference = _round_trip(resolve_model(EMBEDDED_DEFAULT), tmp_path / f"smollm2-{tensor_type}.gguf", tensor_type)
    assert difference <= TOLERANCE[tensor_type]
