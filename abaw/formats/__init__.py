"""Byte-exact handling of the official ABAW files.

- :mod:`abaw.formats.readers` — annotation files, test lists, LSD folder trees, per-video
  folders, sample files and submissions, each validated with file and line in the error;
- :mod:`abaw.formats.writers` — every submission format and the data-side files, atomic;
- :mod:`abaw.formats.submissions` — checks a submission the way the server should, listing every
  problem with its line number.

The vocabularies, sentinels and headers come from :mod:`abaw.vocab`.
"""
