"""CLI subcommands; see glu_ray/cli.py."""
