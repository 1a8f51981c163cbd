"""Running a federation: the training of one run and the config deltas it is planned by."""
