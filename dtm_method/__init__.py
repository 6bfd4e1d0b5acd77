"""Disperse-Then-Merge: dispersal strategies (dispersal.py, embeddings.py) and the method (method.py)."""
