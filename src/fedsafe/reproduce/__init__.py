"""The papers' reproductions: planning, execution, the run cache, outputs, the papers' numbers, cost
estimates and the demo; one file a table in ``reproductions/``."""
