"""Hydra jobs built from rldiff's parts, importable as a package (``examples.ar_drag_grpo``, ``examples.ar_drag``).

Each job script holds its own settings next to its ``main(cfg)``:
``ar_drag_grpo.py`` (AR-Drag Step 2, the main job), ``ar_drag_distill.py``
(Step 1), ``toy_grpo.py`` (the generic core on a 2-D toy). The components they
share sit in ``examples/ar_drag/`` (the AR-Drag world: policy, codec, controls,
reward, evaluation, distillation stages) and ``examples/common/`` (schedules,
parallel settings, the run loop, drawing).
"""
