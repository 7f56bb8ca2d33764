"""Command-line entry points: rnnlab-train, rnnlab-eval, rnnlab-predict (Hydra apps) and rnnlab-report (argparse)."""
