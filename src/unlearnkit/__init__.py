"""unlearnkit: make a language model forget what it must not know, verifiably."""

__version__ = "0.1.0"
