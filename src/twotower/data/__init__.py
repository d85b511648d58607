"""Raw MS MARCO in, prepared tables out, and the tables built from them: held-out validation,
pseudo-queries, unlabelled queries, triplets, TREC runs. Imports only the top-level modules."""
