"""`python -m rnnlab.train`: the same as `rnnlab-train`."""

from rnnlab.cli.train import main

if __name__ == "__main__":
    main()
