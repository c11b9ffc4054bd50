"""`ibnorm-llm tokenizer` under its old path (ibnorm_llm/cli/tokenizer.py), for launch files and habits that name
this script, e.g. `accelerate launch scripts/train_tokenizer.py ...`. Same flags, same exit codes."""

from ibnorm_llm.cli.main import script_main

if __name__ == "__main__":
    script_main("tokenizer")
