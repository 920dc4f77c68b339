"""Multi-run experiment protocols built on ``training.loop.train_and_evaluate``."""
