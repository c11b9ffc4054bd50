"""The norm registry as the modeling code (``modeling_norm_lm.py``) imports it.

Inside the package this module only re-exports :mod:`ibnorm_llm.norms`. A checkpoint must load
where ibnorm_llm is not installed, so ``save_pretrained`` overwrites this file's copy in the
checkpoint with the registry's own source and copies the norm modules it imports beside it
(see ``modeling_norm_lm._write_norm_code``). The norm code exists once in the repository.
"""

from ibnorm_llm.norms import NORMS, build_norm, with_legacy_options

__all__ = ["NORMS", "build_norm", "with_legacy_options"]
