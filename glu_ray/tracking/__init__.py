"""MLflow tracking from the Ray driver: runs, the Tune callback, trial artifacts."""
