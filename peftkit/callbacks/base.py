"""What every peftkit callback shares: state that survives ``resume_from_checkpoint``, and
finding the live callback inside a trainer.

The Trainer saves an ``ExportableState`` callback's ``state()`` into each checkpoint's
``trainer_state.json`` and, with ``restore_callback_states_from_checkpoint=True``, rebuilds the
callback on resume as ``type(cb)(**args)`` plus ``setattr`` of each attribute. The rebuilt object
replaces the one you passed in, so after a resume look it up with :func:`find`.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

C = TypeVar("C", bound="PeftkitCallback")


class PeftkitCallback(TrainerCallback, ExportableState):
    """A TrainerCallback whose constructor arguments and ``STATE`` attributes are checkpointed."""

    STATE: ClassVar[tuple[str, ...]] = ()
    """Attributes (JSON-serialisable) that carry the callback's progress across a resume."""

    def __init__(self, **args: Any) -> None:
        self._args = args

    def state(self) -> dict[str, Any]:
        return {
            "args": dict(self._args),
            "attributes": {name: getattr(self, name) for name in self.STATE},
        }


def find(trainer: Any, kind: type[C]) -> C:
    """The live callback of type ``kind`` in ``trainer`` (after a resume, a rebuilt copy)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, kind):
            return callback
    raise LookupError(f"no {kind.__name__} callback in this trainer")
