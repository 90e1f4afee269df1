"""Semantic Gaussian map: feed-forward Gaussians from keyframes, semantic fusion, persistence."""
