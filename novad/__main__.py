"""``python -m novad`` runs the daemon, like the ``novad`` command."""

from novad.cli import main

main()
