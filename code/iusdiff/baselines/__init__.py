"""The paper's baselines that bring their own networks (paper §3.3, Table 2, Figs. 7–8): Pix2Pix
(``pix2pix``) and ControlNet on the proposed model's image VAE (``controlnet``); the one-step
baseline shares the generator's parts and lives in :mod:`iusdiff.generator`. Also here: a
stand-in generator that perturbs real pairs (``perturb``), always labelled as such, which runs
every evaluation path before or without a trained model.
"""
