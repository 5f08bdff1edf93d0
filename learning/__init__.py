"""Learning through Differentiable PatchMatch: learnt features, trained end to end.

Modules (dependencies run one way: ``learning`` -> ``experiments`` -> ``classic_pm``, ``diff_pm``):

* :mod:`learning.features`: :class:`~learning.features.LearnedFeatures` and ``build_model`` (a DPM
  that scores with them);
* :mod:`learning.checkpoint`: the checkpoint format (``save_checkpoint``, ``load_checkpoint``);
* :mod:`learning.data`: training images and pairs, held-out pairs and the disjointness check;
* :mod:`learning.loss`: the masked-L1 reconstruction (+ EPE) loss;
* :mod:`learning.evaluation`: held-out evaluation with the experiments' per-iteration metrics;
* :mod:`learning.plots`: ``training.png``;
* :mod:`learning.train`: the training loop and outputs of ``python -m experiments train``;
* :mod:`learning.cli`: the options of ``train`` (light: no torch import).

Nothing is imported here, so ``import learning.cli`` stays cheap.
"""
