import time, torch, timm, sys
torch.set_num_threads(2)
for name in sys.argv[1:]:
    m = timm.create_model(name, pretrained=False, num_classes=0)
    opt = torch.optim.Adam(m.parameters())
    x = torch.randn(64, 3, 128, 64)
    for i in range(4):
        if i == 1: t = time.perf_counter()
        out = m(x); out.float().pow(2).mean().backward(); opt.step(); opt.zero_grad()
    dt = (time.perf_counter() - t) / 3
    print(f"{name}: {dt*1000:.0f} ms/step of 64 at 128x64, params {sum(p.numel() for p in m.parameters())/1e6:.2f}M", flush=True)
