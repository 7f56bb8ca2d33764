"""Sweeps: what one job of a multirun does about its neighbours, the sweep summary, Optuna search.

The Hydra plugins that use this (the Optuna sweeper, the submitit launchers) live in
``src/hydra_plugins/rnnlab_sweeps`` because Hydra only loads plugins from that namespace.
"""
