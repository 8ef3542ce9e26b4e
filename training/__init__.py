"""Training and evaluation of the models: loss.py (the objective), schedules.py (β, scheduled sampling,
learning rate), augment.py, batches.py, trainer.py (the loop, single process or DDP), distributed.py,
checkpoint.py, evaluate.py (metrics over the sampling API), plot.py, commands.py (train / evaluate / plot)."""
