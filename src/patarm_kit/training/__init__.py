"""Room 5, training: the warm-up, PAR, its baselines and the policies.

sft and facts (the warm-up and its targets), par_reward (PAR"s reward), grpo, weight_sync and
checkpoints (the GRPO toolkit), par (PAR training), bt (the BT baseline), policies (downstream
RLHF), score_probe (can the score read the stated facts?).
"""

__all__ = ["bt", "checkpoints", "facts", "grpo", "par", "par_reward", "policies", "score_probe", "sft", "weight_sync"]
