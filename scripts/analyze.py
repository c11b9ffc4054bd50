"""`ibnorm-llm analyze` under its old path (ibnorm_llm/cli/analyze.py), for launch files and habits that name
this script, e.g. `accelerate launch scripts/analyze.py ...`. Same flags, same exit codes."""

from ibnorm_llm.cli.main import script_main

if __name__ == "__main__":
    script_main("analyze")
