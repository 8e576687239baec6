"""abaw — a toolkit for the ABAW affective-behaviour competitions."""

__version__ = "0.1.0"
