"""Command-line entry points (Hydra apps): rnnlab-train, rnnlab-eval, rnnlab-predict."""
