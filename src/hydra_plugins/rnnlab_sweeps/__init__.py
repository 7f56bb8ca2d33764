"""rnnlab's Hydra plugins: the Optuna sweeper and the submitit launchers (rnnlab.sweeps does the work).

Hydra loads plugins only from the ``hydra_plugins`` namespace and imports every module here at
start-up, so these modules import nothing heavy at module level.
"""
