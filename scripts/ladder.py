"""`ibnorm-llm ladder` under a script path (ibnorm_llm/cli/ladder.py), like the other scripts/ shims. Same
flags, same exit codes."""

from ibnorm_llm.cli.main import script_main

if __name__ == "__main__":
    script_main("ladder")
