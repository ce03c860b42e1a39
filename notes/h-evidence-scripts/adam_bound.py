"""How far can Adam move a mask logit in T steps? Fit the tiny model end to end on random data
for T steps at learning rate lr and compare the largest logit change with lr * T."""
import sys
import tempfile

import lightning as L
import torch

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.module import RAReIDModule
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

steps, lr = int(sys.argv[1]), float(sys.argv[2])
torch.manual_seed(0)
model = RAReIDModule(**tiny_module_kwargs(mask_schedule="end_to_end", lr=lr, milestones=[10**6]))
before = [m.logits.detach().clone() for m in model.masks.masks]
data = RandomReIDDataModule(size=8 * steps, batch_size=8)
with tempfile.TemporaryDirectory() as tmp:
    trainer = L.Trainer(callbacks=[ProgressiveMaskTraining()], max_steps=steps,
                        **quiet_trainer_kwargs(tmp))
    trainer.fit(model, datamodule=data)
for name, start, mask in zip(model.masks.stage_names, before, model.masks.masks):
    delta = (mask.logits.detach() - start).abs()
    gate = (torch.sigmoid(mask.logits.detach()) - torch.sigmoid(start)).abs()
    print(f"{name}: max |dlogit| {delta.max():.4f}  mean {delta.mean():.4f}  "
          f"mean |dgate| {gate.mean():.4f}  (lr*T = {lr * steps:.4f}; init logits ~ N(0, 1))")
