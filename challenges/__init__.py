"""End-to-end recipes, one per challenge (``python -m challenges.mtl``, ``make mtl``, ...).

Each recipe is a short chain of library steps: data → fit → score validation → tune →
predict → write → validate → report. Nothing here is imported by the library.
"""
