"""The package's version, in the lowest stage so that every stage may name it."""

__version__ = "0.1.0"
