"""homec: a declarative GitOps compiler for home MLOps."""

__version__ = "0.1.0"
