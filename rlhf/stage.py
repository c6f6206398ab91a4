"""`python -m rlhf.stage NAME --iter N`: one stage of a round in its own process."""

from rlhf.cli.main import main

if __name__ == "__main__":
    import sys

    main(["stage", *sys.argv[1:]])
