"""NLTK's ``punkt_tab`` sentence splitter for ifeval, without a download at import.

lm-eval's ifeval module calls ``nltk.download("punkt_tab")`` when ``nltk.data.find`` fails,
which offline is a network call that hangs or fails. Before ifeval is imported we make sure a
``punkt_tab`` is on NLTK's path, in this order:

1. ``prefetched``: ``<offline data>/nltk_data`` (written by ``ibnorm-llm prefetch``);
2. ``installed``: one NLTK already finds (``~/nltk_data``, ``$NLTK_DATA`` ...);
3. ``trained``: offline only, a Punkt model trained with NLTK's ``PunktTrainer`` on the built-in
   corpus and saved in the ``punkt_tab`` layout. ifeval only counts sentences with it (the
   ``number_sentences`` instruction), so its scores can differ slightly from the real model's;
   the run's summary says which one was used.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ibnorm_llm.data import builtin

PUNKT_PATH = "tokenizers/punkt_tab/english"
TRAINING_DOCUMENTS = 400
"""Built-in corpus documents the fallback model is trained on (a few seconds)."""


@dataclass(frozen=True)
class PunktSource:
    kind: str
    """prefetched, installed or trained."""
    path: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path}


def _use_data_dir(data_dir: Path) -> None:
    """Put ``data_dir`` first on NLTK's search path, for this process and its children."""
    import nltk

    data_dir = str(Path(data_dir).resolve())
    if data_dir not in nltk.data.path:
        nltk.data.path.insert(0, data_dir)
    os.environ["NLTK_DATA"] = os.pathsep.join(filter(None, [data_dir, os.environ.get("NLTK_DATA")]))


def _installed() -> str | None:
    import nltk

    try:
        return str(nltk.data.find(PUNKT_PATH + "/"))
    except LookupError:
        return None


def train_punkt_tab(data_dir: Path, documents: list[str]) -> Path:
    """Train a Punkt model on ``documents`` and save it as ``data_dir/tokenizers/punkt_tab/english``.

    Saved under a temporary name and renamed into place, so concurrent ranks never see half a model.
    """
    from nltk.tokenize.punkt import PunktTrainer, save_punkt_params

    if not documents:
        raise ValueError("train_punkt_tab: no documents to train the sentence splitter on")
    _use_data_dir(data_dir)  # NLTK only writes inside its data path
    trainer = PunktTrainer()
    trainer.INCLUDE_ALL_COLLOCS = True
    trainer.train("\n\n".join(documents), finalize=True)
    target = Path(data_dir) / PUNKT_PATH
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_punkt_params(trainer.get_params(), dir=str(tmp.resolve()))
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(tmp)  # another process finished first; its model is as good as ours
    return target


def ensure_punkt_tab(offline_data: Path | None, fallback_dir: Path) -> PunktSource:
    """Make ``punkt_tab`` findable by NLTK; train one into ``fallback_dir`` only when offline and absent."""
    if offline_data is not None and (Path(offline_data) / "nltk_data" / PUNKT_PATH).is_dir():
        _use_data_dir(Path(offline_data) / "nltk_data")
        return PunktSource("prefetched", str(Path(offline_data) / "nltk_data" / PUNKT_PATH))
    trained = Path(fallback_dir) / PUNKT_PATH
    found = _installed()
    if found is not None and Path(found).resolve() != trained.resolve():
        return PunktSource("installed", found)
    if trained.is_dir():
        _use_data_dir(fallback_dir)
        return PunktSource("trained", str(trained))
    if offline_data is None:
        # Online: ifeval downloads the real model itself, as the harness intends.
        return PunktSource("download", "nltk.download('punkt_tab') by lm-eval")
    target = train_punkt_tab(fallback_dir, builtin.builtin_corpus()[:TRAINING_DOCUMENTS])
    return PunktSource("trained", str(target))
