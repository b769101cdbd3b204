"""The metrics layer, pure numpy: ranking metrics (nDCG and friends) and classification metrics
(the classifier's Table 2). The evaluation averages them in Spark; models tune on them."""
