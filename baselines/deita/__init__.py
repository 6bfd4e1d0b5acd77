"""Deita: data selection by an LLM scorer (complexity, quality, or their product) before plain SFT."""
