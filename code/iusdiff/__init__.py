"""iusdiff: reproducibility artifact of the two-step LDM for glioma iUS synthesis.

The package holds all logic; the flat scripts in ``code/`` only wire it to a command line. Its
subpackages follow the paper's roles, each importing only the top-level modules and the
subpackages listed before it:

* ``outputs``: what stages write and how (folder layout, sample contract, results, tables, figures);
* ``data``: RESECT volumes, the phantom, the outside corpus, splits and slices (paper §3.2);
* ``generator``: the proposed two-step generator and its training (paper §3.1, §3.4);
* ``baselines``: Pix2Pix, ControlNet and the stand-in generator (paper §3.3);
* ``evaluation``: metrics, tests, Tables 2–4 and the downstream study (paper §3.5);
* ``report``: Table 1, the figures and the reproduction report;
* ``pipeline``: the stage runner behind ``run_all.sh``, its stages, settings and profiles.

Four modules stay at the top because every role imports them and they import nothing of a role:
``errors`` (the one exception for bad input), ``io`` (atomic writes, PNG, checksums), ``cli``
(the scripts' shared arguments) and ``weights`` (the outside weights a profile needs, checked
before any work, whether the generator, the evaluation or the runner reads them).
"""

__version__ = "0.1.0"
