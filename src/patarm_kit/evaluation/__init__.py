"""Room 6, evaluation: judges measured.

benches/ (each benchmark's scoring rules), evaluate (a judge on a bench, metrics files), curve
(the learning curve), warmup_checks, ifeval and infobench (policy benchmarks), downstream
(policies evaluated), stats (bootstrap intervals).
"""

__all__ = ["benches", "curve", "downstream", "evaluate", "ifeval", "infobench", "stats", "warmup_checks"]
