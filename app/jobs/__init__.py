"""The other jobs of the command line: train, eval, autolabel and the teachers they share."""
