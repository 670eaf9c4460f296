"""The evaluation of paper §3.5: metrics (``metrics``: tumour size, ESD, Dice/HD95, FID/KID) and
statistical tests (``stats``); the Inception features behind FID/KID (``fid``) and MedSAM
segmentation of generated images (``medsam``); real vs generated masks (``mask_eval``: Tables 3
and 4), image quality and morphological fidelity per model (``fidelity``: Table 2, Fig. 8), and
the downstream nnU-Net augmentation study (``downstream``: Fig. 9) with the short trainers that
nnU-Net loads from ``nnunet_trainers/`` by file.
"""
