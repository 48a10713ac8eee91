"""The command line: glu-ray prune | eval | report | ui, and the sweep scripts' flags."""
