"""Text queries on a semantic Gaussian map: relevance, 3D instances, goal poses."""
