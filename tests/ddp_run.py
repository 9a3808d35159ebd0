"""One rank of the two-process (torchrun, gloo, CPU) test in test_distributed.py.

Usage: torchrun --nproc_per_node 2 tests/ddp_run.py MODEL_DIR OUT_DIR
Each rank writes OUT_DIR/rank<N>.json with the step it stopped at and why.

The ranks see different evaluation metrics (:data:`SCRIPTS`): only rank 1 runs out of
patience, so both ranks stop at the same step only if the stop is shared between them.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from tiny_trainer import ScriptedMetric, scripted

from peftkit.callbacks import EarlyStopping, GradientCheck, GradientNormMixin, OverfitDetector
from peftkit.testing import trainer

warnings.simplefilter("ignore")

SCRIPTS = {
    0: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],  # improves at every evaluation: never stops on its own
    1: [1.0, 0.9, 0.95, 0.96, 0.97, 0.5],  # no improvement for 3 evaluations: stops at step 5
}
"""eval_loss at evaluations 1.. (one per step), by rank."""


def main(model_dir: Path, out: Path) -> None:
    from transformers import Trainer

    class Checked(GradientNormMixin, Trainer):
        pass

    stopper = EarlyStopping(patience=3, save_best_to=out / "best")
    script = SCRIPTS[int(os.environ["RANK"])]  # set by torchrun before the process starts
    run = trainer(
        model_dir,
        out / "run",
        [ScriptedMetric(scripted(script)), stopper],
        trainer_class=Checked,
        ddp_find_unused_parameters=False,
        per_device_train_batch_size=2,
    )
    run.add_callback(OverfitDetector())
    run.add_callback(GradientCheck())
    run.train()
    rank = run.args.process_index
    report = {
        "rank": rank,
        "world_size": run.args.world_size,
        "global_step": run.state.global_step,
        "reason": stopper.stop.reason.value if stopper.stop else None,
        "message": stopper.stop.message if stopper.stop else None,
        "best_step": stopper.best_step,
        "restored": stopper.restored,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
