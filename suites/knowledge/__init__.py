"""The knowledge suite: nine benchmarks through EleutherAI lm-evaluation-harness (see suite.py).

Importing this package stays cheap (no lm_eval, no torch), so `atax suites` can list it.
"""

from suites.knowledge.suite import KnowledgeOptions, KnowledgeSuite

__all__ = ["KnowledgeOptions", "KnowledgeSuite"]
