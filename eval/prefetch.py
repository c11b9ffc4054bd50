"""`ibnorm-llm prefetch` under its old path (ibnorm_llm/cli/prefetch.py), for launch files and habits that name
this script, e.g. `accelerate launch eval/prefetch.py ...`. Same flags, same exit codes."""

from ibnorm_llm.cli.main import script_main

if __name__ == "__main__":
    script_main("prefetch")
