"""Label-free pseudo-speakers: cluster a model's embeddings, train a margin classifier on them, repeat."""
