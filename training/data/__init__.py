"""The interaction log: types and id maps at the bottom, the split above them, one loader dispatch
(`load.py`) above the sources (files, MovieLens-100k, the synthetic shop).
"""
