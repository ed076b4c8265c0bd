"""One module per data source: each turns its own rows into preference pairs."""

__all__ = ["finegrained_qa", "generic", "hh_rlhf", "ifeval", "reward_bench", "reward_bench2", "rm_bench", "verifiable_if"]
