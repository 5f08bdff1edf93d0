"""The experiments of the suite, in rooms by concern (imports run one way, downwards):

* the foundation (these top-level modules): :mod:`.errors` (the one-line ``UserError``),
  :mod:`.options` (the one validation vocabulary), :mod:`.devices` (torch device, CPU threads),
  :mod:`.provenance` (the metadata record of every result). They import no room.
* :mod:`.data`: pairs, built-in pairs, user folders, standard datasets and their file readers.
* :mod:`.methods`: the method registry (parameters, defaults, timed runs, reconstructions).
* :mod:`.report`: metrics, tables, figures and REPORT.md writers of ``compare`` and of studies.
* :mod:`.run`: units, studies (spec, planning), local (``compare``) and Dask (``sweep``)
  execution, the result stores.
* :mod:`.cli` composes them (and :mod:`learning`, which only it imports among these):
  ``python -m experiments {compare,sweep,reconstruct,train}``.

``tests/test_layout.py`` checks the arrows: run -> report -> methods -> data -> foundation.
"""
