"""Pipeline stages: the I/O edge of each `dvc repro` stage.

Each stage reads its inputs, calls the library and writes its outputs.

The CLI, the Prefect flows in ``flows/`` and ``dvc.yaml`` all call these functions, so there is one
code path however a stage is started.
"""
