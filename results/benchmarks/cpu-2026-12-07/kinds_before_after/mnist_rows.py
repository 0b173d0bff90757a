import sys, time, numpy as np, jax
from scripts.bench_occlusion import jax_rate, PATCH_MNIST
from jaxvis import checkpoint, data
jax.config.update("jax_default_matmul_precision", "highest")
model, params, _ = checkpoint.restore_model("checkpoints/mnist_cnn")
s = data.open_dataset("mnist_sample", "test"); images, labels = next(iter(s.batches(s.num_examples)))
x = np.asarray(model.normalize(images), np.float32)
out = []
r = jax_rate(2e9, model, params, x[:50], labels[:50], PATCH_MNIST, 1)[0]; out.append(f"full50 {r:.0f}")
for name, kw in [("tau.5+dd4 r.25", dict(tau=0.5, coarse_stride=4)), ("tau.5+dd4 r.1", dict(tau=0.5, coarse_stride=4, drill_fraction=0.1))]:
    r = jax_rate(2e9, model, params, x, labels, PATCH_MNIST, 1, method="incremental", **kw)[0]; out.append(f"{name} {r:.0f}")
print(sys.argv[1], " | ".join(out), flush=True)
