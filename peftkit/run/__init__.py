"""The main job and what it writes: ``peftkit train`` (:mod:`peftkit.run.train`), loading the
model, the output folder and its checkpoints, the model card, the plot and the summary, merging,
and evaluating or trying an adapter. It stands on every other package (docs/architecture.md).
"""
