"""The sweep: the grid, the Ray Tune trial, the driver (typed trial configs and the ledger: glu_ray.trials)."""
