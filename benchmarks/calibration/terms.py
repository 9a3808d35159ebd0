"""The estimator's terms measured on a real model, on the CPU as on a GPU: what each term of
:func:`peftkit.memory.estimate` claims, checked against the tensors a training step really keeps.

- ``activations``: the peak bytes of the tensors autograd saves for the backward pass of the
  decoder layers (``torch.autograd.graph.saved_tensors_hooks``), each storage once (q, k and v
  share their input), parameters left out, over a forward and a backward pass. Measured at the
  batch and at twice the batch: the difference is what grows with the batch, so that autocast's
  bf16 copies of the adapters and the rotary tables (a few kB that do not) drop out.
- ``logits``: the peak of the bytes allocated by the output head and the loss, forward and
  backward, from the profiler's memory timeline (every allocation and free): the transients
  count here (the fp32 copy of the logits, the gradients), which saved tensors do not show.
- ``trainable``, ``gradients``, ``optimizer``: the bytes of the trainable parameters, of their
  ``.grad`` after a backward pass, and of the optimizer's state after one real step.

The model is set up as training sets it up: the weights in the setup's dtype, LoRA by peft
(adapters in fp32, or cast to bf16 on a 4-bit base as TRL does), bf16 autocast when the setup's
activations are 16-bit (the Trainer's ``bf16=True``), ``use_cache=False`` (TRL), activation
checkpointing with the inputs requiring grad (TRL). On the CPU, dropout keeps its mask as
CUDA's ``native_dropout`` does (a bool), not in the input's dtype as the CPU's composite
dropout does: the estimate is for GPUs. Reentrant checkpointing is used for the measurement
(the layer inputs it keeps go through the hooks; non-reentrant keeps the same tensors).

Needs torch, transformers and peft (bitsandbytes for 4-bit); the estimator itself needs none.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peftkit.memory.peak import Setup

TERMS = ("trainable", "gradients", "optimizer", "activations", "logits")
"""The :class:`~peftkit.memory.estimate.Breakdown` terms that are measured here (the weights
and quantization constants are checked byte for byte in tests/test_memory.py)."""


class SavedTensors:
    """The live and peak bytes of what autograd keeps for the backward pass, while active.

    Each storage counts once, whichever ops save it and however often; ``exclude`` holds the
    storages not to count (the parameters: the weights term has them). A saved tensor is
    released when the graph node holding it has run in the backward pass (or is freed).
    """

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.holders: Counter[int] = Counter()
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0
        self._hooks: Any = None

    def pack(self, tensor: Any) -> Any:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.exclude or storage.nbytes() == 0:
            return tensor
        if not self.holders[key]:
            self.sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self.holders[key] += 1
        return _Held(self, key, tensor)

    def release(self, key: int) -> None:
        self.holders[key] -= 1
        if not self.holders[key]:
            self.live -= self.sizes.pop(key)

    def __enter__(self) -> SavedTensors:
        import torch

        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


class _Held:
    """A saved tensor as autograd stores it: releasing it tells the tracker."""

    def __init__(self, tracker: SavedTensors, key: int, tensor: Any) -> None:
        self.tracker, self.key, self.tensor = tracker, key, tensor

    def __del__(self) -> None:
        self.tracker.release(self.key)


def _unpack(held: Any) -> Any:
    return held.tensor if isinstance(held, _Held) else held


def load(folder: str | Path, setup: Setup) -> Any:
    """The model in ``folder`` set up for training as :func:`adapt` does (4-bit NF4 when
    ``setup.bits == 4``), on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = None
    if setup.bits == 4:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=setup.double_quant,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=getattr(torch, setup.weights_dtype), quantization_config=quantization
    )
    return adapt(model, setup)


def adapt(model: Any, setup: Setup, reentrant: bool = True) -> Any:
    """``model`` as training sets it up: LoRA by peft (fp32 adapters, cast to bf16 on a
    quantized base as TRL does) or every weight trained (full), activation checkpointing with
    input gradients (TRL; ``reentrant`` checkpointing keeps its inputs where the hooks of
    :class:`SavedTensors` see them, the non-reentrant kind that recipes use keeps the same
    tensors out of their sight), train mode."""
    import torch
    from peft import LoraConfig, get_peft_model

    if setup.method == "full":
        model.requires_grad_(True)
        return _train_mode(model, setup, reentrant)
    targets = setup.targets if isinstance(setup.targets, str) else list(setup.targets)
    config = LoraConfig(
        r=setup.r,
        lora_alpha=2 * setup.r,
        target_modules=targets,
        lora_dropout=setup.lora_dropout,
        use_dora=setup.use_dora,
    )
    model = get_peft_model(model, config)
    if setup.bits:
        for name, param in model.named_parameters():
            if param.requires_grad and "lora_magnitude_vector" not in name:
                param.data = param.data.to(torch.bfloat16)
    return _train_mode(model, setup, reentrant)


def _train_mode(model: Any, setup: Setup, reentrant: bool) -> Any:
    if setup.activation_checkpointing:
        transformers_model = base(model)
        kwargs = {"use_reentrant": reentrant}
        if hasattr(transformers_model, "activation_checkpointing_enable"):  # transformers 5.23+
            transformers_model.activation_checkpointing_enable(kwargs)
        else:
            transformers_model.gradient_checkpointing_enable(kwargs)
        model.enable_input_require_grads()
    return model.train()


def base(model: Any) -> Any:
    """The transformers model under a peft model (or the model itself, for full fine-tuning)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def precision(setup: Setup, device: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for 16-bit activations (the Trainer's ``bf16=True``), else nothing."""
    import torch

    if setup.activation_bytes == 2:
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def dropout_as_on_cuda() -> Iterator[None]:
    """Dropout through ``native_dropout``, as CUDA runs it: it saves a bool mask (1 byte per
    element), where the CPU's composite dropout saves a mask in the input's dtype (4 bytes for
    fp32 input), which would make the CPU measure a cost no GPU run has."""
    import torch
    import torch.nn.functional as functional

    original = functional.dropout

    def native(input: Any, p: float = 0.5, training: bool = True, inplace: bool = False) -> Any:
        if not training or p == 0:
            return input
        return torch.native_dropout(input, p, True)[0]

    functional.dropout = native
    try:
        yield
    finally:
        functional.dropout = original


def _tokens(model: Any, batch: int, seq_len: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = base(model).config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq_len), generator=generator)
    return ids.to(base(model).device)


def saved_peak(model: Any, setup: Setup, batch: int) -> int:
    """Peak bytes saved for backward by the decoder (embeddings to final norm) of ``model`` at
    ``batch`` x ``setup.seq_len`` tokens, over its forward and backward pass."""
    import torch

    decoder = base(model).model
    ids = _tokens(model, batch, setup.seq_len)
    device = ids.device.type
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with SavedTensors(params) as saved, precision(setup, device), dropout_as_on_cuda():
        hidden = decoder(input_ids=ids, use_cache=False).last_hidden_state
        hidden.backward(torch.ones_like(hidden))
    model.zero_grad(set_to_none=True)
    return saved.peak


def activations(model: Any, setup: Setup) -> int:
    """Saved-for-backward bytes that grow with the batch, at ``setup.batch_size``."""
    batch = setup.batch_size
    return saved_peak(model, setup, 2 * batch) - saved_peak(model, setup, batch)


def allocation_peak(run: Callable[[], None], device: str) -> int:
    """The peak rise of the bytes allocated on ``device`` while ``run()`` runs: the profiler's
    memory timeline, every allocation and free at the allocator, transients included."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(
        activities=activities, profile_memory=True, record_shapes=True, with_stack=True
    ) as profiler:
        run()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in favour of a CUDA-only API
        path = Path(folder) / "timeline.json"
        profiler.export_memory_timeline(str(path), device=str(torch.device(device)))
        _, sizes = json.loads(path.read_text())
    totals = [sum(by_category) for by_category in sizes]
    return max(totals) - totals[0] if totals else 0


def logits(model: Any, setup: Setup) -> int:
    """Peak bytes of the output head and the loss, forward and backward, on a decoder output of
    ``setup.batch_size`` x ``setup.seq_len`` tokens (the Trainer keeps only the loss)."""
    import torch

    head = base(model)
    ids = _tokens(model, setup.batch_size, setup.seq_len)
    dtype = torch.bfloat16 if setup.activation_bytes == 2 else torch.float32
    hidden = torch.zeros(
        (*ids.shape, head.config.hidden_size), dtype=dtype, device=ids.device, requires_grad=True
    )

    def head_and_loss() -> None:
        with precision(setup, ids.device.type):
            out = head.lm_head(hidden)
            loss = head.loss_function(logits=out, labels=ids, vocab_size=head.config.vocab_size)
        del out
        loss.backward()

    return allocation_peak(head_and_loss, ids.device.type)


def tensor_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages of ``tensors`` (shared ones, such as bitsandbytes'
    quantization maps, once)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def training_step(model: Any, setup: Setup, optimizer: Any) -> dict[str, int]:
    """Trainable, gradient and optimizer-state bytes of one real step of ``optimizer``."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    ids = _tokens(model, setup.batch_size, setup.seq_len)
    with precision(setup, ids.device.type):
        loss = base(model)(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    gradients = tensor_bytes(p.grad for p in trainable)
    optimizer.step()
    states = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    optimizer.zero_grad(set_to_none=True)
    return {
        "trainable": tensor_bytes(trainable),
        "gradients": gradients,
        "optimizer": tensor_bytes(states),
    }


OPTIMIZERS = {
    "adamw_torch": ("torch.optim", "AdamW", {}),
    "adamw_torch_fused": ("torch.optim", "AdamW", {"fused": True}),
    "adamw_8bit": ("bitsandbytes.optim", "AdamW8bit", {}),
    "paged_adamw_8bit": ("bitsandbytes.optim", "PagedAdamW8bit", {}),
    "paged_adamw_32bit": ("bitsandbytes.optim", "PagedAdamW32bit", {}),
}
"""What the Trainer builds for each ``training.optimizer`` the estimate knows: (module, class,
keyword arguments). The paged ones need CUDA."""


def make_optimizer(model: Any, name: str) -> Any:
    """The optimizer ``training.optimizer`` names, over the trainable parameters of ``model``."""
    import importlib

    if name not in OPTIMIZERS:
        raise ValueError(f"no measurement for optimizer {name}; one of {sorted(OPTIMIZERS)}")
    module, cls, kwargs = OPTIMIZERS[name]
    trainable = [p for p in model.parameters() if p.requires_grad]
    return getattr(importlib.import_module(module), cls)(trainable, lr=1e-4, **kwargs)


def measure(model: Any, setup: Setup) -> dict[str, int]:
    """Every term of :data:`TERMS`, measured on ``model`` (from :func:`load` or :func:`adapt`)."""
    terms = training_step(model, setup, make_optimizer(model, setup.optimizer))
    terms["activations"] = activations(model, setup)
    terms["logits"] = logits(model, setup)
    return terms


CASES: dict[str, tuple[str, Setup]] = {
    "LoRA": ("tiny", Setup(r=8, lora_dropout=0.0, batch_size=4, seq_len=64)),
    "LoRA, dropout 0.05": ("tiny", Setup(r=8, batch_size=4, seq_len=64)),
    "LoRA, dropout 0.05, checkpointing": (
        "tiny",
        Setup(r=8, batch_size=4, seq_len=64, activation_checkpointing=True),
    ),
    "LoRA, fp32": (
        "tiny",
        Setup(
            r=8,
            lora_dropout=0.0,
            batch_size=4,
            seq_len=64,
            weights_dtype="float32",
            activation_bytes=4,
        ),
    ),
    "LoRA on q_proj, v_proj": (
        "tiny",
        Setup(r=8, lora_dropout=0.0, targets=("q_proj", "v_proj"), batch_size=4, seq_len=64),
    ),
    "QLoRA": (
        "tiny",
        Setup(method="qlora", bits=4, r=8, lora_dropout=0.0, batch_size=4, seq_len=64),
    ),
    "QLoRA, dropout 0.1, checkpointing, 8-bit AdamW": (
        "tiny",
        Setup(
            method="qlora",
            bits=4,
            r=8,
            lora_dropout=0.1,
            batch_size=4,
            seq_len=64,
            activation_checkpointing=True,
            optimizer="adamw_8bit",
        ),
    ),
    "full fine-tuning": ("tiny", Setup(method="full", batch_size=4, seq_len=64)),
    "full fine-tuning, checkpointing": (
        "tiny",
        Setup(method="full", batch_size=4, seq_len=64, activation_checkpointing=True),
    ),
    "SmolLM2 LoRA, dropout 0.05": ("smollm2", Setup(r=16, batch_size=2, seq_len=64)),
    "SmolLM2 QLoRA, dropout 0.1, checkpointing, 8-bit AdamW": (
        "smollm2",
        Setup(
            method="qlora",
            bits=4,
            r=16,
            lora_dropout=0.1,
            batch_size=2,
            seq_len=64,
            activation_checkpointing=True,
            optimizer="adamw_8bit",
        ),
    ),
}
"""The settings tests/test_memory_terms.py and benchmarks/memory_terms.py measure: on the tiny
Llama (:func:`peftkit.testing.build_tiny_model`) every branch of the activation formula, on
SmolLM2-135M the recipes' own settings at 2 x 64 tokens. bf16 weights and autocast unless
named; Setup's defaults otherwise (all-linear, AdamW)."""
