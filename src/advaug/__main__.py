"""``python -m advaug``: the ``advaug`` command, for environments without the console script."""

from advaug.cli import entry

if __name__ == "__main__":
    entry()
