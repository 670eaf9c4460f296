"""Autoencoder losses (paper §3.4): MSE + perceptual (LPIPS) + PatchGAN adversarial + KL.

The adversarial part follows the latent-diffusion autoencoders the paper cites: a pix2pix
PatchGAN discriminator trained with the hinge loss, the generator rewarded by its logits with
the adaptive weight of LDM (:func:`adaptive_weight`) times ``adversarial_weight``, both
switched on after ``disc_start`` steps. LPIPS needs ImageNet VGG16 weights that cannot be
fetched offline; when they are not in the torch hub cache the term is off, the run's log and
options say so (:func:`perceptual_loss`), and every number of the run is labelled with that
deviation (``weights.weight_deviations``).
"""

from __future__ import annotations

import torch
from torch import nn

from iusdiff.weights import PERCEPTUAL_OFF, vgg16_weights_path


class PatchDiscriminator(nn.Module):
    """pix2pix's N-layer PatchGAN (70×70 receptive field at ``layers=3``), batch norm."""

    def __init__(self, in_channels: int = 1, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for index in range(1, layers + 1):
            out = channels * min(2**index, 8)
            stride = 2 if index < layers else 1
            blocks += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*blocks)
        for module in self.modules():  # pix2pix initialisation N(0, 0.02), BN weight N(1, 0.02)
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def discriminator_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """LDM's balance of the adversarial term: ||grad rec|| / ||grad adv|| at the decoder's last
    layer, so the GAN never swamps reconstruction whatever the loss scales are."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def spectral_loss(rec: torch.Tensor, x: torch.Tensor, patch: int = 16) -> torch.Tensor:
    """Mean absolute difference of log amplitude spectra of ``patch``-pixel tiles (image channel).

    MSE rewards the average of all speckle patterns that fit a latent, i.e. a blur. Amplitude
    spectra carry no phase, so this term asks each tile for the right amount of fine texture
    without asking for the exact speckle, and tiles outside the fan (black) for none.
    """
    def amplitude(t: torch.Tensor) -> torch.Tensor:
        tiles = t[:, :1].float().unfold(2, patch, patch).unfold(3, patch, patch)
        return torch.log1p(torch.fft.rfft2(tiles, norm="ortho").abs())

    return (amplitude(rec) - amplitude(x)).abs().mean()


def kl_loss(posterior) -> torch.Tensor:
    """KL to N(0, I) summed over latent elements, averaged over the batch (as in LDM)."""
    return posterior.kl().mean()


class Perceptual(nn.Module):
    """LPIPS-VGG on grayscale images in [-1, 1] (replicated to RGB), mean over the batch."""

    def __init__(self) -> None:
        super().__init__()
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        self.lpips = LearnedPerceptualImagePatchSimilarity(net_type="vgg").net
        self.lpips.requires_grad_(False).eval()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.lpips(_rgb(a), _rgb(b)).mean()


def _rgb(x: torch.Tensor) -> torch.Tensor:
    """The image channel (the first; the joint VAE's second is the mask) as RGB."""
    return x[:, :1].expand(-1, 3, -1, -1)


def perceptual_available(weight: float) -> bool:
    """Whether the perceptual term runs: asked for, and VGG16's weights are in the hub cache."""
    return weight > 0 and vgg16_weights_path().is_file()


def perceptual_loss(weight: float) -> tuple[Perceptual | None, str]:
    """The perceptual term and a sentence for the log/options: on, off by choice, or unavailable."""
    if weight <= 0:
        return None, "perceptual (LPIPS) term off: weight 0 in this profile"
    if not perceptual_available(weight):
        return None, PERCEPTUAL_OFF
    return Perceptual(), f"perceptual (LPIPS-VGG) term on, weight {weight}"
