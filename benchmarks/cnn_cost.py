"""What finer feature maps cost: training and Grad-CAM rate and peak memory per CNN variant,
2D (128^2) and 3D (48^3), on the CPU and/or a GPU (issue 18, item 0).

    python benchmarks/cnn_cost.py [--device cpu,cuda] [--batch 32] [--steps 5]
                                  [--variants default,fine] [--dims 2,3]

Every (variant, dim, device) is measured in its own subprocess so that peak memory is that
configuration's alone: on the CPU the peak RSS of the process (``ru_maxrss``, which includes
torch itself: the ``baseline`` line gives the RSS after importing torch and building
nothing), on a GPU ``torch.cuda.max_memory_allocated``. Inputs are random grids of the
right shape (the rate and memory of a convolution do not depend on the values); one
training step is forward + cross-entropy + backward + Adam; Grad-CAM is
``learn.gradcam.gradcam_layers`` (every layer's map from one pass), grids in, maps out
(no gridding: benchmarks/gradcam_throughput.py times the whole path). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VARIANTS = {
    # the package's default CNN (config.py [train] defaults)
    "default": dict(channels=(16, 32, 64), kernels=(5, 3, 3), strides=(2, 2, 2), hidden=128),
    # the finer maps of issue 18's study (hpc/sweep-variants.example.toml, s112)
    "fine": dict(channels=(8, 16, 16), kernels=(5, 3, 3), strides=(1, 1, 2), hidden=64),
}
GRID = {2: 128, 3: 48}


def measure(variant: str, dim: int, device: str, batch: int, steps: int) -> dict:
    import torch

    from glasscam_mpi.learn.gradcam import gradcam_layers
    from glasscam_mpi.learn.model import ModelSpec, build_model

    torch.manual_seed(0)
    spec = ModelSpec(dim=dim, in_channels=2, n_grid=GRID[dim], **VARIANTS[variant])
    model = build_model(spec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn((batch, 2) + (GRID[dim],) * dim, device=device)
    y = torch.randint(0, 2, (batch,), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    def cam_step():
        gradcam_layers(model, x)

    out = {"variant": variant, "dim": dim, "grid": GRID[dim], "device": device, "batch": batch,
           "parameters": sum(p.numel() for p in model.parameters())}
    for name, fn in (("train", train_step), ("gradcam", cam_step)):
        model.train(name == "train")
        fn(); sync()  # warm-up (cudnn autotune, allocator)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        sync()
        out[f"{name}_samples_per_s"] = round(batch * steps / (time.perf_counter() - t), 1)
    if device.startswith("cuda"):
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def baseline() -> dict:
    import torch  # noqa: F401

    import glasscam_mpi.learn.model  # noqa: F401
    return {"baseline_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cpu,cuda")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per figure (>= 1)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--dims", default="2,3")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: variant:dim:device
    a = ap.parse_args(argv)
    if a.one:
        v, d, dev = a.one.split(":")
        print(json.dumps(measure(v, int(d), dev, a.batch, a.steps) if v != "-" else baseline()))
        return 0
    for v in a.variants.split(","):
        if v not in VARIANTS:
            ap.error(f"--variants: unknown variant {v!r} (allowed: {', '.join(VARIANTS)})")
    rows = []
    jobs = [("-", "0", "cpu")] + [(v, d, dev) for dev in a.device.split(",")
                                  for d in a.dims.split(",") for v in a.variants.split(",")]
    for v, d, dev in jobs:
        r = subprocess.run([sys.executable, __file__, f"--one={v}:{d}:{dev}", "--batch",
                            str(a.batch), "--steps", str(a.steps)], capture_output=True, text=True)
        rows.append(json.loads(r.stdout) if r.returncode == 0 else
                    {"variant": v, "dim": d, "device": dev, "error": r.stderr.strip()[-400:]})
    # side by side: the fine variant's cost relative to the default, same dim and device
    ratios = []
    by = {(r.get("variant"), str(r.get("dim")), r.get("device")): r for r in rows}
    for dev in a.device.split(","):
        for d in a.dims.split(","):
            base, fine = by.get(("default", d, dev)), by.get(("fine", d, dev))
            if base and fine and "error" not in base and "error" not in fine:
                ratios.append({"dim": int(d), "device": dev,
                               "train_rate_fine_over_default": round(
                                   fine["train_samples_per_s"] / base["train_samples_per_s"], 3),
                               "gradcam_rate_fine_over_default": round(
                                   fine["gradcam_samples_per_s"] / base["gradcam_samples_per_s"], 3)})
    print(json.dumps({"rows": rows, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
