"""Checkpoints of `peftkit train` and what ``--resume`` continues from.

A run that saves (``training.save``) writes the Trainer's checkpoints to ``checkpoints/`` in
its staging folder, and the best adapter beside them; the staging folder becomes the output
when the run ends. A killed run leaves its staging folder behind: ``--resume`` continues from
its last complete checkpoint (optimizer, scheduler, data order, random state and the callbacks'
progress), and a new run without ``--resume`` or ``--overwrite`` is refused rather than
throwing that work away.

A resume continues one run: that of the output it is given (a checkpoint of another run starts
a new run only with ``--fork``), and it never stands for ``--overwrite``. Before anything loads,
the checkpoint is checked whole and against the run (:func:`check_checkpoint`): what it restores
whatever the recipe says (the adapter's shape, the optimizer, the schedule) must be what the
recipe says, so that recipe.yaml and the model card never record settings the run did not use.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.core.errors import Problem, ProblemsError, RecipeError
from peftkit.core.names import is_local
from peftkit.recipes.overrides import token

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
BEST_ADAPTER = "best-adapter"
"""Early stopping's best adapter, kept with the checkpoints so that a resume can restore it."""
_NAME = re.compile(r"^checkpoint-(\d+)$")
_COMPLETE = "trainer_state.json"
"""Written last into a checkpoint: one without it was cut short."""


def last_checkpoint(folder: Path, skip: Path | None = None) -> Path | None:
    """The complete checkpoint with the highest step in ``folder`` (other than ``skip``); None
    when there is none."""
    if not folder.is_dir():
        return None
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if path != skip and (match := _NAME.match(path.name)) and (path / _COMPLETE).is_file()
    ]
    return max(found)[1] if found else None


def find_checkpoint(resume: str | Path, target: Path, staging: Path) -> Path:
    """The checkpoint ``--resume`` names: ``auto`` for the last one of a killed run of this
    output (its staging folder), else of the output itself; or a checkpoint folder, or a
    folder of them."""
    if str(resume) == "auto":
        for place in (staging, target):
            found = last_checkpoint(place / CHECKPOINTS)
            if found is not None:
                return found
        raise RecipeError(
            f"--resume auto: no checkpoint of --output {target} to continue. Fix: run without "
            "--resume (with training.save=steps a run writes checkpoints to resume from)."
        )
    path = Path(resume).expanduser().resolve()
    if (path / _COMPLETE).is_file():
        return path
    found = last_checkpoint(path) or last_checkpoint(path / CHECKPOINTS)
    if found is None:
        raise RecipeError(
            f"--resume {resume}: not a checkpoint (a checkpoint-N folder with {_COMPLETE}), nor "
            "a folder holding one. Fix: pass --resume auto, or the path of a checkpoint-N "
            "folder."
        )
    return found


def check_unfinished(target: Path, staging: Path, overwrite: bool) -> None:
    """Refuse to start over on a killed run's checkpoints unless asked to."""
    found = last_checkpoint(staging / CHECKPOINTS)
    if found is None or overwrite:
        return
    raise RecipeError(
        f"--output {target}: a run of this output was stopped after {found.name} and can "
        "continue from there. Fix: add --resume auto to continue it, or --overwrite to start over."
    )


@dataclass(frozen=True)
class Resume:
    """What ``--resume`` continues: the checkpoint, and whether it is one of this output's own
    run (its folder, or the staging folder a killed run left), which the resume may replace."""

    checkpoint: Path
    own: bool


def plan_resume(
    resume: str | Path | None, target: Path, staging: Path, overwrite: bool, fork: bool
) -> Resume | None:
    """The checkpoint ``--resume`` names, or None without it (then a killed run's checkpoints
    are not thrown away unless ``--overwrite`` says so).

    ``--resume`` never means ``--overwrite``: it replaces only the output whose run it
    continues. A checkpoint of another run goes to another output only with ``fork``, which
    starts a new run from it (and that output follows the usual rules, --overwrite included).
    """
    if resume is None:
        check_unfinished(target, staging, overwrite)
        return None
    if overwrite and not fork:
        raise RecipeError(
            f"--resume {resume} --overwrite: --resume continues a run and --overwrite starts "
            "one over; peftkit does not guess which you meant. Fix: drop --overwrite to "
            "continue the run, or drop --resume to start over."
        )
    checkpoint = find_checkpoint(resume, target, staging)
    left = last_checkpoint(staging / CHECKPOINTS)
    if left is not None and staging not in checkpoint.parents:
        raise RecipeError(
            f"--resume {resume}: a run of --output {target} was stopped after {left.name}, "
            f"which {staging} holds, and resuming from {checkpoint} would throw it away. Fix: "
            f"pass --resume auto to continue that run, or delete {staging} first."
        )
    own = checkpoint.parent.name == CHECKPOINTS and checkpoint.parent.parent in (target, staging)
    if not own and not fork:
        run = _run_of(checkpoint)
        where = (
            f"run {run}" if run is not None else f"{checkpoint.parent}, not an output of peftkit"
        )
        raise RecipeError(
            f"--resume {resume}: {checkpoint.name} belongs to {where}, not to --output "
            f"{target}; resuming there would mix two runs. Fix: pass --output {run or 'THAT_RUN'} "
            "to continue that run, or add --fork to start a new run in --output from this "
            "checkpoint."
        )
    return Resume(checkpoint, own)


def _run_of(checkpoint: Path) -> Path | None:
    """The output whose run wrote ``checkpoint`` (OUT/checkpoints/checkpoint-N, or the staging
    folder of OUT), None for a checkpoint elsewhere."""
    from peftkit.run.outputs import STAGING

    if checkpoint.parent.name != CHECKPOINTS:
        return None
    folder = checkpoint.parent.parent
    if folder.name.startswith(".") and folder.name.endswith(STAGING):
        return folder.with_name(folder.name[1 : -len(STAGING)])
    return folder


FIXED_BY_CHECKPOINT = {
    "model.name": "the checkpoint's adapter belongs to that model",
    "method": "the checkpoint holds what that method trains",
    "quantization.bits": "the adapter learned corrections to the base quantized so",
    "lora.r": "the checkpoint's adapter tensors have that shape",
    "lora.alpha": "the adapter's scale is part of what it learned",
    "lora.target_modules": "the checkpoint's adapter sits on those modules",
    "lora.modules_to_save": "the checkpoint trains those modules in full",
    "lora.use_dora": "the checkpoint's adapter is of that kind",
    "lora.use_rslora": "the adapter's scale is part of what it learned",
    "training.optimizer": "the checkpoint's optimizer state is of that optimizer",
    "training.learning_rate": "the optimizer and schedule restored from the checkpoint fix it",
    "training.lr_scheduler": "the schedule restored from the checkpoint fixes it",
    "training.warmup_steps": "the schedule restored from the checkpoint fixes it",
    "training.weight_decay": "the optimizer state restored from the checkpoint fixes it",
}
"""Settings a checkpoint fixes: a resume restores them from the checkpoint whatever the recipe
says, so a recipe that says otherwise would be recorded (recipe.yaml, the model card) falsely."""
_ADAPTER_KEYS = {
    "lora.r": "r",
    "lora.alpha": "lora_alpha",
    "lora.use_dora": "use_dora",
    "lora.use_rslora": "use_rslora",
}
"""Recipe fields and their names in a checkpoint's adapter_config.json."""
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")


def check_checkpoint(checkpoint: Path, recipe: Recipe) -> None:
    """What ``--resume`` restores, checked against the run before anything loads: the
    checkpoint is whole (its trainer state, its weights), its adapter is the one this recipe
    trains, and the settings it fixes (:data:`FIXED_BY_CHECKPOINT`) are the recipe's. Every
    mismatch is named with both values at once."""
    step = _trainer_step(checkpoint)
    max_steps = recipe.training.max_steps
    if max_steps is not None and step >= max_steps:
        raise RecipeError(
            f"--resume {checkpoint}: the checkpoint is at step {step} and training.max_steps is "
            f"{max_steps}: nothing is left to train. Fix: set training.max_steps above {step}."
        )
    earlier = _adapter_settings(checkpoint, recipe)
    written = checkpoint.parent.parent / "recipe.yaml"
    if written.is_file():
        earlier = {**_recipe_settings(written), **earlier}
    now = _settings(recipe)
    found = [
        Problem(
            field,
            now[field],
            f"the checkpoint was written with {field}={token(value)}: {FIXED_BY_CHECKPOINT[field]}",
            f"set {field}={token(value)} to continue that run, or start a new run without --resume",
        )
        for field, value in earlier.items()
        if field in now and _differs(field, value, now[field])
    ]
    if found:
        raise ProblemsError(f"between this run and the checkpoint {checkpoint}", found)


def _trainer_step(checkpoint: Path) -> int:
    """The step the checkpoint's trainer_state.json records; a damaged file is refused."""
    path = checkpoint / _COMPLETE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        reason = "it is empty" if path.is_file() and not path.stat().st_size else str(error)
        raise _damaged(checkpoint, f"{_COMPLETE} cannot be read ({reason})") from None
    step = state.get("global_step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _damaged(checkpoint, f"{_COMPLETE} records no step (global_step)")
    return step


def _damaged(checkpoint: Path, why: str) -> RecipeError:
    another = last_checkpoint(checkpoint.parent, skip=checkpoint)
    other = f"resume from another checkpoint (--resume {another}), or " if another else ""
    return RecipeError(
        f"--resume {checkpoint}: the checkpoint is damaged: {why}. Fix: {other}start over "
        "without --resume."
    )


def _adapter_settings(checkpoint: Path, recipe: Recipe) -> dict[str, Any]:
    """The checkpoint's weights must be there; for an adapter, its settings by recipe field."""
    if recipe.method == "full":
        if not any(any(checkpoint.glob(pattern)) for pattern in MODEL_WEIGHTS):
            raise _damaged(checkpoint, "it holds no model weights")
        return {}
    if not any((checkpoint / name).is_file() for name in ADAPTER_WEIGHTS):
        raise _damaged(
            checkpoint,
            f"it holds no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})"
            + (
                " but a whole model's: it was trained with method full"
                if any(checkpoint.glob("model*.safetensors"))
                else ""
            ),
        )
    try:
        config = json.loads((checkpoint / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        config = None
    if not isinstance(config, dict):
        raise _damaged(checkpoint, f"its {ADAPTER_CONFIG} is missing or not a JSON object")
    found = {field: config[key] for field, key in _ADAPTER_KEYS.items() if key in config}
    targets = config.get("target_modules")
    if isinstance(targets, list) and recipe.lora.target_modules != "all-linear":
        found["lora.target_modules"] = sorted(targets)
    base = config.get("base_model_name_or_path")
    if isinstance(base, str) and base:
        found["model.name"] = base
    return found


def _recipe_settings(path: Path) -> dict[str, Any]:
    """The fixed settings of the recipe the checkpoint's run wrote; none when it cannot be
    read (a newer or hand-edited file): the adapter's own config is then all there is."""
    import warnings

    from peftkit import recipes

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _settings(recipes.load(path))
    except (ValueError, OSError) as error:
        log.warning("cannot compare the settings with %s: %s", path, str(error).splitlines()[0])
        return {}


def _settings(recipe: Recipe) -> dict[str, Any]:
    dumped = recipe.model_dump(mode="json")
    found = {}
    for field in FIXED_BY_CHECKPOINT:
        value: Any = dumped
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[field] = value
    return found


def _differs(field: str, earlier: Any, now: Any) -> bool:
    if now == "auto":  # not resolved yet: compared again once it is (peftkit.run.train)
        return False
    if field == "model.name":
        return _model_key(earlier) != _model_key(now)
    earlier, now = _unordered(earlier), _unordered(now)
    if isinstance(earlier, int | float) and isinstance(now, int | float):
        return not math.isclose(earlier, now)  # rel_tol 1e-09 by default
    return bool(earlier != now)


def _unordered(value: Any) -> Any:
    """A list (of modules) as its items in one order: the recipe's order is no difference."""
    return sorted(value) if isinstance(value, list) else value


def _model_key(name: str) -> str:
    """A model name as one spelling: a local folder by its absolute path."""
    if is_local(name):
        return str(Path(name).expanduser().resolve())
    return name
