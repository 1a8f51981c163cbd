"""Whether a claim holds: paired tests with Holm's correction over the seeds, and the verdict rule."""
