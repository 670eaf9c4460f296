"""Custom nnU-Net trainers, found by nnU-Net through ``nnUNet_extTrainer`` (see iusdiff_short).

``iusdiff_short.py`` is left byte for byte as it was before the package's subpackages (its
docstring still says ``iusdiff.downstream`` for :mod:`iusdiff.evaluation.downstream`): its sha256
is part of every nnU-Net training's key (``downstream.trainers_digest``), and an edit retrains
every entry of the downstream study.
"""
