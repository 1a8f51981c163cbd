"""Whether a claim holds: paired tests with Holm's correction over the seeds and the verdict rule; and the confidence
intervals of single numbers over images (Wilson for a rate, DeLong for an AUC)."""
