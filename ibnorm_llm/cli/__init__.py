"""The ``ibnorm-llm`` command (also ``python -m ibnorm_llm``): one subcommand per job.

Each subcommand is a module here with a docstring (its ``--help`` text), ``add_arguments(parser)``
and ``run(args) -> int``. Modules import their heavy dependencies (torch, transformers, lm-eval)
inside ``run``, so ``--help`` and a bad config answer at once. The scripts under ``scripts/`` and
``eval/`` are shims that call the same subcommands. Errors map to exit codes in one place,
:mod:`ibnorm_llm.cli.errors`.
"""

from ibnorm_llm.cli.main import COMMANDS, main, run_command

__all__ = ["COMMANDS", "main", "run_command"]
