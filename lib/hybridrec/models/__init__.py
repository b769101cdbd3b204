"""The models layer: one interface (:mod:`hybridrec.models.base`) - ``fit`` on ratings, then the
top-n of any customers - and every recommender registered by name (:mod:`hybridrec.models.registry`):
dense ones (popularity, ALS, floors), neighbour ones (item-kNN, the paper's), and the default
hybrid with its cold-start model. The recommend and evaluate stages use the same classes."""
