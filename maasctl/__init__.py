"""maasctl: a command-line model lifecycle tool for TensorFlow.

The library (store, packaging, training, serving, client) is importable without the CLI.
Importing this package never imports TensorFlow.
"""

__version__ = "0.1.0"
