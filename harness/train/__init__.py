"""The one SFT engine every method trains through (engine.py), its batching, hooks and resume."""
