"""Instruction-following suites graded by an LLM judge: MT-bench (first turn, second optional) and
Vicuna-bench, answers generated with the checkpoint's own training template, judged through any
OpenAI-compatible chat-completions endpoint with single-answer `[[rating]]` grading.
"""
