"""`ibnorm-llm health` (ibnorm_llm/cli/health.py) as a script: `python scripts/health.py RUN [RUN ...] --out DIR`.
Same flags, same exit codes."""

from ibnorm_llm.cli.main import script_main

if __name__ == "__main__":
    script_main("health")
