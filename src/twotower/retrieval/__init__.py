"""Ranking passages: exact dense top-k, faiss ANN indexes, sharded embedding, BM25 and fusion.
Imports the top level, `data` and `text`."""
