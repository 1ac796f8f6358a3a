"""PRIME Workbench engine: implicit process rewards on one 4-bit base model.

See ../shared/PRIME_SPEC.md for the algorithm and README.md for the command line.
"""

__version__ = "0.1.0"
