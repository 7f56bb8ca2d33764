"""`python -m rnnlab.eval`: the same as `rnnlab-eval`."""

from rnnlab.cli.eval import main

if __name__ == "__main__":
    main()
