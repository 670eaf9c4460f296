"""How ``run_all.sh`` runs the stages: the runner that checksums what each stage writes and skips
finished ones (``runner``), the stage table (``stages``), the host that forks stages from one
process with torch imported (``stagehost``), the settings schema (``settings``) and the profiles
over it (``profiles/*.toml``, resolved by ``config``), what a script's code fingerprint covers
(``digests``), the plumbing of the training and sampling scripts: folds, settings, run keys,
skipping (``runs``), and independent work items in worker processes (``workers``).
"""
