"""twotower: a two-tower (dual encoder) retrieval model for MS MARCO-style data."""

from twotower.errors import TwoTowerError


__all__ = ["Searcher", "TwoTowerError"]
__version__ = "0.1.0"
