"""The report room: what a run's numbers mean and how they are shown.

* :mod:`.metrics`: the quality metrics of every row (PSNR, SSIM, L1, MSE, energy, EPE, the
  datasets' own metrics), the same function for every method.
* :mod:`.artifacts`: what ``compare``'s figures need beyond the tables (final matches, a few
  reconstructions per unit).
* :mod:`.plotting`: how every figure draws: one colour, marker and line style per method, the
  limit and the baselines as levels, primitive plots (images, flow maps, errors, metric lines).
* :mod:`.tables`, :mod:`.figures`, :mod:`.compare`: ``compare``'s summary tables, figures and
  REPORT.md / console table.
* :mod:`.sweep_tables`, :mod:`.sweep_figures`, :mod:`.sweep`: a study's aggregation, figures and
  REPORT.md.

Figures are :class:`matplotlib.figure.Figure` objects of their own (no pyplot, no backend chosen
at import); plot functions take ``ax`` or ``fig`` and return it.

May import: the foundation, the data room and the methods room (names, labels, markers).
"""
