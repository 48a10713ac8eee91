"""What a pruned model saves: speed (and, later, memory and energy) measurements."""
