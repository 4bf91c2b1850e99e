"""novactl: the Nova client. Click commands and Rich rendering over the daemon's socket."""

from novad import __version__

__all__ = ["__version__"]
