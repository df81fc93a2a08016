"""A physics source of real closed-loop rollouts: MetaWorld (MuJoCo) tasks, a behaviour-cloned
policy whose last hidden layer is recorded, injected per-axis faults, and counterfactual labels.

Modules: :mod:`.env` (tasks, scripted experts, the 4-D arm's 7-D layout), :mod:`.policy` (demos and
behaviour cloning), :mod:`.perturbations` (the fault mix), :mod:`.episodes` (one episode, exact
replay, point of no return, blame), :mod:`.labels` (deviation labels), :mod:`.collect` (parallel
collection into the rollout pickle format). The simulator is an optional extra: see
:func:`vlarisk.physics.env.require_simulator`. docs/physics-source.md describes every rule.
"""
