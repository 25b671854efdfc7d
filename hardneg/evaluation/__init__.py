"""Downstream probes shared across modalities (frozen encoders, seeded protocols).

- :mod:`hardneg.evaluation.linear`: linear probe (SimCLR protocol).
- :mod:`hardneg.evaluation.knn`: weighted kNN monitor (k = 200, cosine, exp(sim / 0.5) votes).
- :mod:`hardneg.evaluation.svc`: RBF SVC with nested stratified k-fold (InfoGraph protocol).
- :mod:`hardneg.evaluation.senteval`: SentEval-protocol logistic regression and STS.
"""
