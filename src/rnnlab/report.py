"""`python -m rnnlab.report`: the same as `rnnlab-report`."""

from rnnlab.cli.report import main

if __name__ == "__main__":
    main()
