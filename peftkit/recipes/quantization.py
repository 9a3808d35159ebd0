"""The ``quantization`` section: how the frozen base weights are stored (bitsandbytes)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails

from peftkit.core.errors import rule_error
from peftkit.recipes.foreign_keys import suggestions
from peftkit.recipes.keywords import PassThrough, extra_field

ComputeDtype = Literal["auto", "bfloat16", "float16", "float32"]
_BOOL = TypeAdapter(bool)
_FLAG_FIX = {
    "load_in_4bit": "set quantization.load_in_4bit=true with method=qlora, or "
    "quantization.load_in_4bit=false",
    "load_in_8bit": "set quantization.load_in_8bit=true, or quantization.load_in_8bit=false",
}


class QuantizationSection(PassThrough):
    """Base-weight quantization. ``bits: null`` keeps the weights in ``model.dtype``."""

    TARGET = "bnb"

    SUGGEST: ClassVar[dict[str, str]] = suggestions(
        "quantization",  # and BitsAndBytesConfig's own names, which no flat config uses
        bnb_4bit_use_double_quant="double_quant",
        bnb_4bit_compute_dtype="compute_dtype",
    )

    bits: Literal[4, 8] | None = Field(
        None, description="4 (NF4/FP4, QLoRA), 8 (LLM.int8) or null for no quantization."
    )
    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4",
        description="4-bit data type; NF4 is information-theoretically optimal for normal weights.",
    )
    double_quant: bool = Field(
        True, description="Quantize the quantization constants too (~0.37 bit/param saved)."
    )
    compute_dtype: ComputeDtype = Field(
        "auto",
        description="dtype the 4-bit weights are dequantized to for matmuls; 'auto' follows "
        "training.precision (bfloat16 with bf16, float16 with fp16, float32 with fp32).",
    )
    storage_dtype: Literal["auto", "uint8", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Container dtype of packed 4-bit weights; 'auto' is uint8, or under FSDP "
        "(which needs it equal to compute_dtype) the compute dtype.",
    )

    extra: dict[str, Any] = extra_field(
        "BitsAndBytesConfig", "llm_int8_threshold, llm_int8_skip_modules, ..."
    )

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
        """Also accept BitsAndBytesConfig's load_in_4bit/load_in_8bit, which users paste."""
        data, errors = super()._prepare(data)
        if not {"load_in_4bit", "load_in_8bit"} & set(data):
            return data, errors
        data = dict(data)
        flags = {key: data.pop(key) for key in ("load_in_4bit", "load_in_8bit") if key in data}
        for key, value in list(flags.items()):
            try:  # the words a boolean field takes elsewhere (true, yes, on, 1)
                flags[key] = _BOOL.validate_python(value)
            except ValidationError:
                errors.append(rule_error([key], value, "must be true or false", _FLAG_FIX[key]))
        four, eight = flags.get("load_in_4bit") is True, flags.get("load_in_8bit") is True
        if four and eight:
            errors.append(
                rule_error(
                    ["load_in_8bit"],
                    True,
                    "4-bit and 8-bit quantization are both switched on",
                    "set quantization.load_in_8bit=false with method=qlora (4-bit), or "
                    "quantization.load_in_4bit=false with method=lora (8-bit)",
                )
            )
        elif "bits" in data and (four or eight):
            errors.append(
                rule_error(
                    ["load_in_4bit" if four else "load_in_8bit"],
                    True,
                    "quantization.bits is set too",
                    "remove it; quantization.bits says the same",
                )
            )
        elif four or eight:
            data["bits"] = 4 if four else 8
        return data, errors
