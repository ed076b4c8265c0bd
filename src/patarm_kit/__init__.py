"""patarm-kit: a notebook-first reproducibility kit for PaTaRM (arXiv 2510.24235).

The notebooks in notebooks/ tell the story; this package does the work:
config (profiles) -> data (pairs) -> prompts/rubrics (judge format) -> judge (batched
judging) -> par (rewards) -> train (SFT, GRPO with LoRA) -> bench (metrics) -> figures.
"""

__version__ = "0.1.0"
