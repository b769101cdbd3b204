"""The datasets layer: seeded, reproducible splits and samples of the ratings (the evaluation's
held-out part and the models' carve-outs of a training part)."""
