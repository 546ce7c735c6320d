"""The one training loop, in parts: ``fit_loop`` (epochs, batches, resume state), ``evaluation_loop``
(validate, test, predict passes) and ``hook_caller`` (who is called for each hook, in Lightning's order).

The optimization step (automatic, manual, backward, optimizer and scheduler stepping) lives beside
``LightningOptimizer`` in :mod:`lightray.optimization`.
"""
