"""Evaluation: benchmark suites as data, lm-eval runs on in-memory models, fast perplexity."""
