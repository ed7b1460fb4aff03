"""Inference engines behind one interface.

Engines take a pgmpy ``DiscreteBayesianNetwork`` (the boundary: pgmpy objects
never leave :mod:`diagnosis.network` and this package) and answer posterior
marginals for batches of evidence.
"""
