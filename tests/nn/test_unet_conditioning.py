"""UNet2D's class conditioning is usable early in training.

Ten classes, each a fixed random 8x8 pattern (amplitude 0.5) under per-example variation of std 1, so a
label's gradient signal is small next to the noise of the data (as for spoken digits). At a high noise level
the optimal denoiser returns the class pattern; after a short training the outputs for the ten labels must
already point at their own patterns. With label embeddings initialised at std 0.02 the same training left the
outputs the same for every label (correlation ~0): FSDD models then ignored their digit labels.
"""

import torch

from multidiff.core.process import Denoiser
from multidiff.nn.unet import UNet2D


def test_labels_steer_the_denoiser_after_a_short_training():
    torch.manual_seed(0)
    patterns = 0.5 * torch.randn(10, 1, 8, 8)
    net = UNet2D(channels=8, channel_mults=(1, 2), attention_levels=(), mid_attention=False, num_classes=10)
    D = Denoiser(net, "edm", 1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(200):
        label = torch.randint(0, 10, (32,))
        x0 = patterns[label] + torch.randn(32, 1, 8, 8)
        sigma = torch.exp(torch.empty(32).uniform_(-1.0, 2.5))
        x = x0 + sigma.view(32, 1, 1, 1) * torch.randn_like(x0)
        loss = ((D(x, sigma, label=label) - x0) ** 2 * (1 + 1 / sigma**2).view(32, 1, 1, 1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        x = 10.0 * torch.randn(10, 1, 8, 8)
        out = D(x, torch.full((10,), 10.0), label=torch.arange(10))
    out = out - out.mean(0)                                 # what differs between the labels
    cos = torch.nn.functional.cosine_similarity(out.flatten(1), patterns.flatten(1) - patterns.mean(0).flatten(), dim=1)
    assert cos.min() > 0.5, cos  # measured: 0.73-0.90 (std 0.02 rows: -0.28-0.21)
