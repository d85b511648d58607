"""Text to token ids: the tokenizers, the vocabulary, fixed-width token arrays and the GloVe
vectors. Imports only the top level."""
