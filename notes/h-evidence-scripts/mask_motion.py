"""How far did each stage's mask logits move from their initialisation during a progressive fit?"""
import sys
import torch

ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
hp = ckpt["hyper_parameters"]
init_seed = ckpt.get("callbacks", {}).get("ProgressiveMaskTraining", {}) and 0
state = ckpt["state_dict"]
stages = sorted({k.split(".")[2] for k in state if k.startswith("masks.masks.") and k.endswith("logits")}, key=int)
print(f"checkpoint epoch {ckpt['epoch']} step {ckpt['global_step']}, lr {hp['lr']}, init mean {hp['mask_init_mean']} std {hp['mask_init_std']}")
for stage in stages:
    logits = state[f"masks.masks.{stage}.logits"].float()
    active = bool(state[f"masks.masks.{stage}.active"])
    gen = torch.Generator().manual_seed(0 + int(stage))
    init = torch.randn(logits.shape, generator=gen) * hp["mask_init_std"] + hp["mask_init_mean"]
    dlog = (logits - init).abs()
    dgate = (torch.sigmoid(logits) - torch.sigmoid(init)).abs()
    g = torch.sigmoid(logits)
    hr_lr = (g[-1] - g[0]).abs().mean()
    print(f"stage {stage} active={active} C={logits.shape[1]}: mean|dlogit| {dlog.mean():.4f} max {dlog.max():.4f}; "
          f"mean|dgate| {dgate.mean():.4f}; gate mean per level (1..m) {[round(float(x),3) for x in g.mean(1)]}; "
          f"mean|gate_HR - gate_r4| {hr_lr:.3f}")
