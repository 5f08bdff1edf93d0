"""Learnt matching features, trained with and without DPM, and the study that measures them.

Modules (dependencies run one way: ``learning`` -> ``experiments`` -> ``classic_pm``, ``diff_pm``):

* :mod:`learning.nets`: :class:`~learning.nets.ConvFeatures` (dilated 3 x 3 nets, 7 x 7 or 15 x 15
  receptive field, a stacked descriptor patch);
* :mod:`learning.features`: the earlier :class:`~learning.features.LearnedFeatures` and
  ``build_model`` (a DPM that scores with any features);
* :mod:`learning.checkpoint`: the checkpoint format (``save_checkpoint``, ``load_checkpoint``);
* :mod:`learning.data`: training images and pairs, validation and test pairs, the splits' check,
  the texture rule;
* :mod:`learning.loss`: the arms' losses (reconstruction, InfoNCE, cross-entropy over DPM's candidates);
* :mod:`learning.arms`: what each arm trains and one optimisation step;
* :mod:`learning.train`: the training loop (``fit``) and ``python -m experiments train``;
* :mod:`learning.evaluation`: validation of ``train`` with the experiments' per-iteration metrics;
* :mod:`learning.harness`: feature sets x matchers on pairs (the study's measurements);
* :mod:`learning.study`, :mod:`learning.study_stats`, :mod:`learning.study_report`:
  ``python -m experiments learn-study``, its statistics and its report;
* :mod:`learning.plots`: ``training.png``;
* :mod:`learning.settings`, :mod:`learning.cli`: the settings and options of ``train`` and
  ``learn-study`` (light: no torch import).

Nothing is imported here, so ``import learning.cli`` stays cheap.
"""
