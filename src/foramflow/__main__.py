"""``python -m foramflow``: the same command as the ``foramflow`` script."""

from foramflow.cli import main

if __name__ == "__main__":
    main()
