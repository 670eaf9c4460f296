"""The paper's items that are assembled rather than measured: Table 1 (``table1``), the figures of
generated images (``figures``: Figs. 3, 5, 7, 8, 10) and of tumour masks (``plots_masks``:
Figs. 4, 6), and the reproduction report that sets every number beside the paper's with its
provenance label (``reproduction``). They read what :mod:`iusdiff.evaluation` computes and write
through :mod:`iusdiff.outputs`.
"""
