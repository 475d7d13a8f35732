"""The training engine (as ``detectron2.engine``): the loop, solver, checkpointer, distributed set-up, evaluation
during training, and the job that ties them together. Library code; `panopticdepth train` and
``training/train.py`` only parse flags and call :func:`job.run_job`."""
