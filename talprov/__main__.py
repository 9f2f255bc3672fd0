"""``python -m talprov`` runs the CLI."""

from talprov.cli import main

main()
