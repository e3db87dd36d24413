import torch, torch.nn.functional as F
torch.set_printoptions(precision=10)
z = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [2.0, 1.0, -1.0]], dtype=torch.float64, requires_grad=True)
y = torch.tensor([2, 0, 1, 0])
w = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
for name, kw in [("ce", {}), ("weighted", {"weight": w}), ("smooth", {"label_smoothing": 0.1}), ("weighted_smooth", {"weight": w, "label_smoothing": 0.1})]:
    z.grad = None
    l = F.cross_entropy(z, y, **kw); l.backward()
    print(name, repr(l.item()), [round(v, 10) for v in z.grad.flatten().tolist()])
# focal: -alpha_y (1-p_y)^g log p_y, mean over samples
alpha = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
for g in [0.0, 2.0, 0.5]:
    z.grad = None
    lp = F.log_softmax(z, 1).gather(1, y[:, None])[:, 0]
    l = (-alpha[y] * (1 - lp.exp()) ** g * lp).mean(); l.backward()
    print("focal", g, repr(l.item()), [round(v, 10) for v in z.grad.flatten().tolist()])
# optimizers: w decays, b not (two param groups)
for opt in ["adam", "adamw", "sgd_nesterov"]:
    wt = torch.tensor([1.0, -2.0], requires_grad=True); b = torch.tensor([0.5], requires_grad=True)
    groups = [{"params": [wt], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}]
    if opt == "adam": o = torch.optim.Adam(groups, lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    elif opt == "adamw": o = torch.optim.AdamW(groups, lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    else: o = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    grads = [([0.5, -1.0], [0.25]), ([0.1, 0.3], [-0.5]), ([-0.2, 0.0], [1.0])]
    for gw, gb in grads:
        wt.grad = torch.tensor(gw); b.grad = torch.tensor(gb)
        o.step()
        print(opt, [repr(v) for v in wt.tolist()], [repr(v) for v in b.tolist()])
# ReduceLROnPlateau (LearningRateScheduleTests.plateauMatchesTorch)
p = torch.nn.Parameter(torch.zeros(1))
o = torch.optim.SGD([p], lr=0.1)
s = torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=1, threshold=0.1, cooldown=1, min_lr=0.02)
lrs = []
for m in [1.0, 0.95, 0.95, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]:
    s.step(m); lrs.append(o.param_groups[0]["lr"])
print("plateau", lrs)
