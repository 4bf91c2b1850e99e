"""novad: the Nova daemon that keeps a ChromaDB index of a notes folder current.

This package's top level stays import-light on purpose: the client imports
``novad.protocol`` and ``novad.paths``, and must not pull in chromadb, torch or watchfiles.
"""

__version__ = "0.1.0"
