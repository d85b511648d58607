"""twotower: a two-tower (dual encoder) retrieval model for MS MARCO-style data."""

from twotower.errors import TwoTowerError

__all__ = ["Searcher", "TwoTowerError"]
__version__ = "0.1.0"


def __getattr__(name):
    """Import `Searcher` (and with it torch) only when asked for: `twotower validate` and
    the data stages stay quick to start."""
    if name == "Searcher":
        from twotower.serve.search import Searcher

        return Searcher
    raise AttributeError(f"module 'twotower' has no attribute {name!r}")
