"""Built-in backends (`hf`, `answers`), registered through the `atax.backends` entry-point group."""
