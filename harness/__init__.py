"""atax: a harness for the alignment-tax study of instruction-tuned LLMs.

Importing this package must stay cheap (no torch): the CLI imports it for `--help`.
"""

__version__ = "0.1.0"
