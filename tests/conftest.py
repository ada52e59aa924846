"""Shared fixtures: a tiny randomly initialised model with the real SmolLM2 tokenizer, and the shared data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.engine_fixtures import postgres_server  # noqa: F401  (the session's throwaway PostgreSQL server, for the tests that ask)

SHARED_DATA = Path(os.environ.get("CODELUTRA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """The path of a data set in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data set not found at {path} (set CODELUTRA_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A 2-layer Llama with random weights and SmolLM2's tokenizer and chat template, saved to disk."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from codelutra.models import EMBEDDED_DEFAULT, load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(EMBEDDED_DEFAULT))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A folder nothing may be created in, also for root (for whom permission bits do not count)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        yield folder
    else:  # root: sysfs refuses new files to everyone
        try:
            tempfile.TemporaryFile(dir="/sys").close()
        except OSError:
            yield Path("/sys")
        else:
            pytest.skip("no folder here refuses writes to this user")
    folder.chmod(0o700)
