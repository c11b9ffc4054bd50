"""ibnorm_llm: pretraining with IBNorm and the norms it is compared with."""

import logging as _logging


class _DropDeepSpeedCpuNotice(_logging.Filter):
    """DeepSpeed logs "Setting accelerator to CPU. If you have GPU ... we were unable to detect it." when it
    is imported on a machine without CUDA (accelerate and transformers import it whenever it is installed),
    i.e. on every CPU command, although nothing here uses DeepSpeed unless a launch file asks for it."""

    def filter(self, record: _logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Setting accelerator to CPU")


# Attached to the logger by name before DeepSpeed configures it; DeepSpeed's other messages pass.
_logging.getLogger("DeepSpeed").addFilter(_DropDeepSpeedCpuNotice())
