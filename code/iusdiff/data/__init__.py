"""The data every stage starts from (paper §3.2, Table 1): reading RESECT iUS volumes and
RESECT-SEG tumour masks (``resect``), the B-mode phantom that stands in for them (``phantom``),
the CPU profiles' outside pretraining corpus made of more phantom subjects (``corpus``), the
subject-level splits (``splits``) and slice selection into the prepared 2-D dataset (``slices``).
"""
