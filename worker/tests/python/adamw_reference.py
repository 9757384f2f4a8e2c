"""torch.optim.AdamW on the parameters and fixed gradients Rosetta wrote, for the parity test.

usage: adamw_reference.py IN.safetensors OUT.safetensors LR1,LR2,...
IN holds `param.NAME` and `grad.NAME`; parameters whose name ends in `.bias` or contains
`LayerNorm` get no weight decay (Rosetta's rule, and the usual Hugging Face recipe).
"""

import sys

import torch
from safetensors.torch import load_file, save_file

tensors = load_file(sys.argv[1])
lrs = [float(x) for x in sys.argv[3].split(",")]
names = sorted(k[len("param."):] for k in tensors if k.startswith("param."))
params = {n: torch.nn.Parameter(tensors[f"param.{n}"].clone()) for n in names}
decay = [params[n] for n in names if not (n.endswith(".bias") or "LayerNorm" in n)]
no_decay = [params[n] for n in names if n.endswith(".bias") or "LayerNorm" in n]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
    lr=lrs[0], betas=(0.9, 0.999), eps=1e-8, foreach=False)
for lr in lrs:
    for group in optimizer.param_groups:
        group["lr"] = lr
    for n in names:
        params[n].grad = tensors[f"grad.{n}"].clone()
    optimizer.step()
save_file({n: params[n].detach().contiguous() for n in names}, sys.argv[2])
