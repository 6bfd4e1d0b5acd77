"""Result tables (markdown, LaTeX, CSV, HTML) in the paper's style, figures (matplotlib, PNG + PDF),
and the static leaderboard page, all built from the results store or from plain numbers.

Submodules import matplotlib and scipy inside their functions; importing this package is cheap.
"""
