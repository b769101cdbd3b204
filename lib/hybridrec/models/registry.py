"""Every recommender by name: what ``recommend.model`` and ``evaluate.models`` name."""
from __future__ import annotations

from hybridrec.errors import UserError
from hybridrec.models.base import ModelConf, Recommender
from hybridrec.models.dense import Als, GenreAffinity, Popular, RandomOrder
from hybridrec.models.ease import Ease
from hybridrec.models.hybrid import Hybrid
from hybridrec.models.neighborhood import ItemKnn, Paper, PaperRating, Visual
from hybridrec.models.ranker import Ranked

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (
    Popular, ItemKnn, Als, Ease, Visual, Paper, PaperRating, Hybrid, RandomOrder, GenreAffinity, Ranked)}


def make_model(name: str, conf: ModelConf) -> Recommender:
    """The registered recommender ``name``, configured by ``conf``."""
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; models are {', '.join(MODELS)}")
    return MODELS[name](conf)
