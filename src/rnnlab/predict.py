"""`python -m rnnlab.predict`: the same as `rnnlab-predict`."""

from rnnlab.cli.predict import main

if __name__ == "__main__":
    main()
