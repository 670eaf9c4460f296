"""The proposed two-step generator (paper §3.1, trained as in §3.4): its models (``models``: the
autoencoders and the mask and image LDMs, all diffusers models), the autoencoder losses
(``losses``), the training data and augmentation (``data``), the three training tasks (``tasks``),
the loop that runs them (``training``), sampling masks then images (``sampling``) and a
trained fold's models at work, for the sampling stage and for pairs on demand (``generate``). The one-step
baseline is the same parts on a joint (image, mask) autoencoder, so it lives here too; the
baselines that bring their own networks are in :mod:`iusdiff.baselines`.
"""
