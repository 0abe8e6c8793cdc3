"""rlbff_lib: the library behind the RLBFF reproduction (arXiv 2509.21319).

Modules read top to bottom; notebooks under ``notebooks/`` orchestrate them.
"""

__version__ = "0.1.0"
