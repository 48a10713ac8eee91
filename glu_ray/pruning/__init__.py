"""The pruning core: importance metrics, target widths, rank once / prune many."""
