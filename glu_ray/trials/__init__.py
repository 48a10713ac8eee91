"""What a trial is, below the sweep and tracking that both read it: its typed config, the stop rule
it carries, and the ledger of what it reported."""
