"""``python -m ibnorm_llm <command>`` (and ``accelerate launch -m ibnorm_llm train --config ...``)."""

import sys

from ibnorm_llm.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
