"""iusdiff: reproducibility artifact of the two-step LDM for glioma iUS synthesis.

The package holds all logic; the flat scripts in ``code/`` only wire it to a command line.
"""

__version__ = "0.1.0"
