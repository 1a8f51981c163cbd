"""Evaluating a run: its loaded context, transfer attacks (plain and adaptive), starts, sanity checks and the
evaluation records."""
