"""Making requests real: the step runner, the reconciler's passes, the leftover sweep.

This layer sits above the drivers and the store and below the scaler: it drives
any :class:`talprov.providers.Provider` through its steps and keeps progress
through :class:`talprov.reconcile.storage.ProgressStorage`.
"""
