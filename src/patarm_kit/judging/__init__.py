"""Room 4, judging: the generative judge and its baselines.

rubrics and prompts (what the judge reads), models and engine (weights, vLLM or transformers),
judge (batched judging and readouts), outcome (the pair outcome rule), registry (every judge by
name), bt_scorer (the BT baseline).
"""

__all__ = ["bt_scorer", "engine", "judge", "models", "outcome", "prompts", "registry", "rubrics"]
