"""The neighbours layer: the numpy top-K kernels, the blocked Spark search within category blocks,
rating cosine, and the one recipe that blends them (what the similarity stage writes and what every
neighbour model computes)."""
