"""The pgmpy boundary: every pgmpy name the package uses is imported here.

pgmpy 1.x warns at import time about its own deprecated modules (a
``FutureWarning`` about v1.3.0); that is not the user's concern, so the
import is done once, quietly. Only :mod:`diagnosis.model.network` and
:mod:`diagnosis.inference` import from this module.
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*will be removed in v1\.3\.0.*", category=FutureWarning)
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.inference import VariableElimination
    from pgmpy.models import DiscreteBayesianNetwork
    from pgmpy.readwrite import BIFReader, BIFWriter, XMLBIFReader, XMLBIFWriter

__all__ = [
    "BIFReader",
    "BIFWriter",
    "DiscreteBayesianNetwork",
    "TabularCPD",
    "VariableElimination",
    "XMLBIFReader",
    "XMLBIFWriter",
]
