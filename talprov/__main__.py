"""``python -m talprov`` runs the CLI, as the ``talprov`` console script does."""

from talprov.launcher import main

main()
