"""Projected GPU cost of a grid: workload profiles, analytic cost model, --estimate."""
