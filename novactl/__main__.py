"""``python -m novactl`` runs the client, like the ``novactl`` command."""

from novactl.cli import main

main()
