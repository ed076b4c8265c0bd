"""Room 3, data: stage 01, preference pairs from the sources, split and decontaminated.

pairs (the pair record and its file), sources/ (one module per source), loading (a source by
name), splits (a pair's split), stage (what stage 01 writes), policy_prompts (the downstream
policies' prompts), ifcheck (IFEval's checker).
"""

__all__ = ["ifcheck", "loading", "pairs", "policy_prompts", "sources", "splits", "stage"]
