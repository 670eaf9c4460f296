"""What the stages write, and how: the output folder's layout (``layout``), the sample contract of
generated pairs (``samples``), nnU-Net's raw dataset format (``nnunet``), every reproduced number in one long format with its provenance
label beside the paper's (``results``, ``paper``), tables as CSV, Markdown and LaTeX (``tables``)
and the conventions every figure shares (``plotting``). Every other subpackage writes through
these; they import only the package's top-level plumbing (``errors``, ``io``).
"""
