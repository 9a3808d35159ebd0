"""`peftkit env`: what a bug report needs, in one paste: versions, the accelerator, precision."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

PACKAGES = (
    "peftkit",
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "pydantic",
)


def describe() -> dict[str, Any]:
    """Versions (None when not installed), the GPUs with their memory, and bf16 support."""
    import torch

    from peftkit.core.hardware import cpu_has_native_bf16

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    gpus = [
        {
            "name": torch.cuda.get_device_name(i),
            "memory_gb": round(torch.cuda.get_device_properties(i).total_memory / 1e9, 1),
        }
        for i in range(torch.cuda.device_count() if cuda else 0)
    ]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "cuda": torch.version.cuda if cuda else None,
        "gpus": gpus,
        "bf16": torch.cuda.is_bf16_supported() if cuda else cpu_has_native_bf16(),
    }


def as_text(found: dict[str, Any]) -> str:
    """The description as lines to paste into an issue."""
    lines = [f"python: {found['python']}", f"platform: {found['platform']}"]
    lines += [
        f"{name}: {version or 'not installed'}" for name, version in found["versions"].items()
    ]
    if found["gpus"]:
        lines.append(f"CUDA: {found['cuda']}")
        lines += [
            f"GPU {i}: {g['name']}, {g['memory_gb']:g} GB" for i, g in enumerate(found["gpus"])
        ]
    else:
        lines.append("GPU: none (training runs on the CPU)")
    where = "GPU" if found["gpus"] else "CPU"
    lines.append(f"bf16: {'yes' if found['bf16'] else 'no'} ({where})")
    return "\n".join(lines)
