"""`python -m mendlab`: the `mendlab` command, for an environment whose scripts folder is not on PATH."""

from mendlab.cli import main

if __name__ == "__main__":
    main()
