"""The sweep: typed trial configs, the grid, the Ray Tune trial, the driver, the ledger."""
