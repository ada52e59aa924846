"""codelutra: refine a small open code model on one job by learning from its verified successes and failures."""

__version__ = "0.1.0"
