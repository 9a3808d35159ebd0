"""What every peftkit callback shares: it reports through the Trainer's own log events, it acts
only on what happens inside ``train()``, and its state survives ``resume_from_checkpoint``.

**Reporting.** What a callback measures or decides is added to the log event it belongs to
(``logs`` in ``on_log``, and the entry the Trainer just appended to ``state.log_history``), so
every ``report_to`` integration and ``log_history`` receive it. The Trainer calls its own
callbacks (TensorBoard, W&B, MLflow, the progress bar) before the ones a user adds, so a value
added in ``on_log`` would reach none of them. At the start of training a peftkit callback moves
itself ahead of them in the Trainer's callback list; the list is the one the Trainer is calling
the callback from, found by walking up the call stack to ``CallbackHandler.call_event`` (the
Trainer gives callbacks no reference to itself or to the handler). Moving an element from
position ``k`` to an earlier one while the handler iterates at ``k`` changes no later position,
so the current event still reaches every callback once.

**Only training counts.** An evaluation before or after ``train()`` (peftkit's before/after
evaluation, a user's own ``trainer.evaluate()``) is not one the callbacks decide on, as in
Lightning's ``_should_skip_check``.

**Resume.** The Trainer saves an ``ExportableState`` callback's ``state()`` into each
checkpoint's ``trainer_state.json`` and, with ``restore_callback_states_from_checkpoint=True``,
rebuilds the callback on resume as ``type(cb)(**args)`` plus ``setattr`` of each attribute. The
rebuilt object replaces the one you passed in, so after a resume look it up with :func:`find`.
Resuming without that setting makes a callback start over; it says so once.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler, ExportableState

from peftkit.callbacks.stopping import Stop
from peftkit.core.errors import ProblemsError, problems, warn
from peftkit.core.quiet import quiet_warnings

quiet_warnings()  # what peft triggers inside transformers while any of these callbacks trains

C = TypeVar("C", bound="PeftkitCallback")


class Leading(TrainerCallback):
    """A callback that runs ahead of the Trainer's own callbacks during ``train()``, and knows
    whether it is inside ``train()``.

    ``LEAD_ORDER`` orders leading callbacks among themselves: producers of metrics (0) before
    the callbacks that decide on them (1), whatever order they were added in.
    """

    LEAD_ORDER: ClassVar[int] = 1

    def __init__(self) -> None:
        self.training = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = True
        _lead(self)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.training = False


def _lead(callback: Leading) -> None:
    handler = _calling_handler()
    if handler is None:  # called by something other than the Trainer: nothing to reorder
        return
    callbacks = handler.callbacks
    here = next(i for i, c in enumerate(callbacks) if c is callback)
    before = next(
        i
        for i, c in enumerate(callbacks)
        if c is callback or not isinstance(c, Leading) or c.LEAD_ORDER > callback.LEAD_ORDER
    )
    if before < here:
        callbacks.insert(before, callbacks.pop(here))


def _calling_handler() -> CallbackHandler | None:
    # Relies on transformers internals (CallbackHandler dispatching from a method of its own),
    # hence transformers<6 in pyproject.toml; if they change, callbacks are just not reordered.
    frame = sys._getframe(1)
    while frame is not None:
        found = frame.f_locals.get("self")
        if isinstance(found, CallbackHandler):
            return found
        frame = frame.f_back
    return None


class PeftkitCallback(Leading, ExportableState):
    """A leading callback whose constructor arguments and ``STATE`` attributes are
    checkpointed, and that reports what it measured in the next log event."""

    STATE: ClassVar[tuple[str, ...]] = ()
    """Attributes (JSON-serialisable) that carry the callback's progress across a resume."""
    SETTINGS: ClassVar[type[BaseModel]]
    """The settings model its arguments are validated with (set by :func:`bound_to`)."""
    FROM_TRAINER: ClassVar[frozenset[str]] = frozenset()
    """Arguments whose None means "the Trainer's own setting, read when training starts"."""
    AT_EVALUATIONS: ClassVar[bool] = False
    """It decides at evaluations, so a Trainer that never evaluates leaves it idle (its settings
    model says so, :func:`bound_to` copies it)."""

    def __init__(self, **args: Any) -> None:
        super().__init__()
        # Ranges, choices and types as a recipe checks them, values coerced as pydantic does
        # ("3" is 3): a bad argument fails here, not mid-run.
        self._args = checked_arguments(type(self).__name__, self.SETTINGS, args, self.FROM_TRAINER)
        for name, value in self._args.items():  # each setting is the attribute of its name
            setattr(self, name, value)
        self._pending: dict[str, Any] = {}
        self.warned: list[str] = []
        self.stop_record: dict[str, Any] | None = None
        """Why it stopped training (:func:`~peftkit.callbacks.stopping.record_stop`)."""

    @property
    def stop(self) -> Stop | None:
        """Why this callback stopped training, or None if it did not."""
        return Stop.from_dict(self.stop_record)

    def state(self) -> dict[str, Any]:
        return {
            "args": dict(self._args),
            "attributes": {name: getattr(self, name) for name in self.STATE},
        }

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        name = type(self).__name__
        saved = getattr(state, "stateful_callbacks", None) or {}
        resumed = state.global_step > 0 and name in saved and self.STATE
        if resumed and not args.restore_callback_states_from_checkpoint:
            self.warn_once(
                "resumed-without-state",
                f"{name} starts over: training resumed from a checkpoint without "
                "restore_callback_states_from_checkpoint=True, so its progress (best value, "
                "counters) is not restored. Fix: pass "
                "restore_callback_states_from_checkpoint=True in the training arguments.",
            )
        if self.AT_EVALUATIONS and _strategy(args.eval_strategy) == "no":
            self.warn_once(
                "never-evaluates",
                f"{name} will never act: the Trainer's eval_strategy is 'no', so there are no "
                f"evaluations to decide on. Fix: pass eval_strategy='steps' (with eval_steps and "
                f"an eval_dataset) in the training arguments, or leave {name} out.",
            )

    def report(self, **values: Any) -> None:
        """Add ``values`` to the next log event (kept until one comes)."""
        self._pending.update(values)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any
    ) -> None:
        if logs is None or not self._pending:
            return
        add_to_log(state, logs, self._pending)
        self._pending = {}

    def warn_once(self, key: str, message: str) -> None:
        """A PeftkitWarning, once per run and key; also in the next log event, for trackers."""
        if key in self.warned:
            return
        self.warned.append(key)
        warn(message)
        earlier = self._pending.get("peftkit_warning")
        self.report(peftkit_warning=message if earlier is None else f"{earlier} | {message}")


def _strategy(value: Any) -> str:
    """A Trainer interval setting as its word: the enum's value, or the string given."""
    return str(getattr(value, "value", value))


def add_to_log(state: Any, logs: dict[str, Any], values: dict[str, Any]) -> None:
    """Add ``values`` to the log event being dispatched: to ``logs``, which the callbacks after
    this one (the Trainer's loggers included) receive, and to the ``state.log_history`` entry
    the Trainer appended just before dispatching it."""
    logs.update(values)
    last = state.log_history[-1] if state.log_history else None
    if last is not None and last.get("step") == state.global_step:
        last.update(values)


def checked_arguments(
    name: str, settings: type[BaseModel], args: dict[str, Any], from_trainer: frozenset[str]
) -> dict[str, Any]:
    """``args`` validated with the callback's ``settings`` model and coerced as a recipe's
    values are; every bad one is reported at once (argument, value, rule, fix). A None in
    ``from_trainer`` stays None: the callback reads the Trainer's setting instead."""
    given = {k: v for k, v in args.items() if not (k in from_trainer and v is None)}
    try:
        valid = settings.model_validate(given)
    except ValidationError as error:
        raise ProblemsError(f"in the arguments of {name}", problems(error)) from None
    return {key: None if key not in given else getattr(valid, key) for key in args}


def defaults(settings: type[BaseModel]) -> dict[str, Any]:
    """The default of every field of a callback's settings model: the callback's own defaults,
    so that they are written once."""
    return {name: field.default for name, field in settings.model_fields.items()}


def bound_to(settings: type[BaseModel]) -> Callable[[type[C]], type[C]]:
    """Class decorator: the callback's constructor takes exactly the fields of ``settings``
    (but ``enabled``, which only says whether a recipe attaches it), checked when the module
    is imported, so a field renamed on one side breaks at once rather than in a run."""

    def check(callback: type[C]) -> type[C]:
        parameters = set(inspect.signature(callback.__init__).parameters) - {"self"}
        fields = set(settings.model_fields) - {"enabled"}
        if parameters != fields:
            raise TypeError(
                f"{callback.__name__} and {settings.__name__} disagree: only in the callback "
                f"{sorted(parameters - fields)}, only in the settings {sorted(fields - parameters)}"
            )
        callback.SETTINGS = settings
        callback.AT_EVALUATIONS = getattr(settings, "AT_EVALUATIONS", False)
        return callback

    return check


def find(trainer: Any, kind: type[C]) -> C:
    """The live callback of type ``kind`` in ``trainer`` (after a resume, a rebuilt copy)."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, kind):
            return callback
    raise LookupError(f"no {kind.__name__} callback in this trainer")
