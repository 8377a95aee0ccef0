"""A persistent hybrid collection of chunks (BM25 + dense + learned sparse + ColBERT)."""

from densparse.collection.collection import Collection, Hit

__all__ = ["Collection", "Hit"]
