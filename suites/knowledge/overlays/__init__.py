"""Task YAML overlays: the keys atax replaces in lm-eval's own task configs (package data).

Each generated task `include:`s lm-eval's config first and one of these second, so everything
not named here (prompts, stop sequences, filters) stays lm-eval's.
"""
