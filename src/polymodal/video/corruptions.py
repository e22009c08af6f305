"""Video and audio corruptions at severities 1-5 (spec video.md 2.3 and 2.6; docs/methods/video-data.md).

Video: the 12 UCF101-C types that ViTTA (Lin et al., CVPR 2023) evaluates at severity 5
(:data:`VIDEO_CORRUPTIONS_UCF101C`) plus ``brightness``. Clips are float tensors ``(T, C, H, W)`` or batches
``(B, T, C, H, W)`` in ``[0, 1]`` (C = 3, or 1 for grey); the output has the input's shape, dtype and device and stays
in ``[0, 1]``.

Parameter tables follow ImageNet-C (Hendrycks & Dietterich, ICLR 2019) where ImageNet-C has the type; pixel
lengths (blur radii, streak lengths) are ImageNet-C's values at 224 px **scaled linearly with the frame's shorter
side**, so a 32-px clip gets CIFAR-10-C-sized blurs. ``salt``, ``pepper``, ``rain`` and ``h265_abr`` have no
ImageNet-C counterpart: their tables are ours [reconstruction]. UCF101-C itself was made with per-frame ffmpeg
filters and an x265 encode at an average bitrate; we have no ffmpeg pipeline, so every type is a torch re-creation.

Across frames (a decision, documented in docs/methods/video-data.md):

* every **parameter** (severity, kernel, blur angle, rain slant) is identical for all frames of a clip;
* **random realisations** (noise, impulse positions, rain streaks) are drawn afresh per frame by default
  (``frame_noise="independent"``), as ffmpeg's temporal ``noise`` filter does when UCF101-C is generated frame by
  frame; ``frame_noise="shared"`` reuses one realisation for every frame (a static noise pattern);
* deterministic types act frame by frame, so a static clip stays static; ``h265_abr`` is the one temporal type
  (skipped macroblocks repeat the previous decoded frame).

Randomness comes only from the ``seed`` / ``generator`` argument, and the draws do not depend on the severity, so
one seed gives nested corruptions (the impulse pixels of severity 2 include those of severity 1, etc.).

Audio (:func:`corrupt_audio`, waves ``(n,)`` or ``(..., n)``): Gaussian noise at an SNR, clipping, muted segments,
a low-pass "muffled" filter and crowd-like babble, all [reconstruction] for robustness studies.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.core.offline import MissingDependencyError

Tensor = torch.Tensor
FRAME_NOISE_MODES = ("independent", "shared")


@dataclass(frozen=True)
class Corruption:
    """One registered corruption: its function, parameter table (one entry per severity 1..5) and provenance."""

    name: str
    fn: Callable[..., Tensor]
    params: dict[str, tuple]
    reference: str
    description: str
    random: bool = True
    temporal: bool = False
    aliases: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------


def _scale(h: int, w: int) -> float:
    """Pixel lengths are specified at 224 px (ImageNet-C) and scaled with the shorter side."""
    return min(h, w) / 224.0


def _noise_shape(x: Tensor, shared: bool, channels: int | None = None) -> tuple[int, ...]:
    b, t, c, h, w = x.shape
    return (b, 1 if shared else t, c if channels is None else channels, h, w)


def _rand(gen: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.rand(shape, generator=gen).to(device=like.device, dtype=like.dtype)


def _randn(gen: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.randn(shape, generator=gen).to(device=like.device, dtype=like.dtype)


def _filter_frames(x: Tensor, kernel: Tensor) -> Tensor:
    """Convolve every channel of every frame of ``x`` (B, T, C, H, W) with a 2-D ``kernel`` (k, k), reflect-padded."""
    b, t, c, h, w = x.shape
    k = kernel.shape[-1]
    pad = k // 2
    flat = x.reshape(b * t * c, 1, h, w)
    mode = "reflect" if pad < min(h, w) else "replicate"
    flat = F.pad(flat, (pad, pad, pad, pad), mode=mode)
    out = F.conv2d(flat, kernel.to(device=x.device, dtype=x.dtype)[None, None])
    return out.reshape(b, t, c, h, w)


def disk_kernel(radius: float) -> Tensor:
    """A normalised disk of ``radius`` pixels with an anti-aliased edge (weight ``clip(r + 0.5 - d, 0, 1)``)."""
    half = max(0, int(math.ceil(radius + 0.5)) - 1)  # the last offset with a positive weight
    coords = torch.arange(-half, half + 1, dtype=torch.float32)
    d = torch.sqrt(coords[:, None] ** 2 + coords[None, :] ** 2)
    k = (radius + 0.5 - d).clamp(0.0, 1.0)
    return k / k.sum()


def line_kernel(length: float, angle_deg: float, sigma: float | None = None, centred: bool = False,
                normalise: bool = True) -> Tensor:
    """A line of ``length`` pixels at ``angle_deg`` (0 = horizontal), drawn with bilinear splats every 0.25 px.

    One-sided from the centre (ImageNet-C's motion blur) unless ``centred``; weights ``exp(-s^2 / 2 sigma^2)`` along
    the line when ``sigma`` is given, else flat; normalised to sum 1, or to a peak of 1 (a streak mask) otherwise.
    """
    half = int(math.ceil(length)) + 1
    k = torch.zeros(2 * half + 1, 2 * half + 1)
    steps = max(2, int(math.ceil(length * 4)) + 1)
    s = torch.linspace(0.0, length, steps)
    if centred:
        s = s - length / 2
    wts = torch.ones_like(s) if sigma is None else torch.exp(-(s**2) / (2 * max(sigma, 1e-6) ** 2))
    a = math.radians(angle_deg)
    xs, ys = half + s * math.cos(a), half - s * math.sin(a)
    x0, y0 = xs.floor(), ys.floor()
    fx, fy = xs - x0, ys - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi = (x0 + dx).long().clamp(0, 2 * half)
        yi = (y0 + dy).long().clamp(0, 2 * half)
        k.index_put_((yi, xi), wts * wgt, accumulate=True)
    return k / k.sum() if normalise else k / k.max()


def _rgb_to_ycbcr(x: Tensor) -> Tensor:
    r, g, b = x.unbind(-3)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 0.5 + (b - y) * 0.564
    cr = 0.5 + (r - y) * 0.713
    return torch.stack((y, cb, cr), dim=-3)


def _ycbcr_to_rgb(x: Tensor) -> Tensor:
    y, cb, cr = x.unbind(-3)
    r = y + 1.403 * (cr - 0.5)
    g = y - 0.344 * (cb - 0.5) - 0.714 * (cr - 0.5)
    b = y + 1.773 * (cb - 0.5)
    return torch.stack((r, g, b), dim=-3)


# --------------------------------------------------------------------------------------------------------------
# video corruptions: each takes x (B, T, C, H, W) float in [0, 1], severity 1..5, a CPU generator, shared flag
# --------------------------------------------------------------------------------------------------------------

GAUSSIAN_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_PHOTONS = (60, 25, 12, 5, 3)
IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
SALT_PEPPER_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
DEFOCUS_RADIUS_224 = (3, 4, 6, 8, 10)
DEFOCUS_MIN_RADIUS = 0.75
MOTION_RADIUS_224 = (10, 15, 15, 15, 20)
MOTION_SIGMA_224 = (3, 5, 8, 12, 15)
ZOOM_FACTORS = ((1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.02), (1.0, 1.26, 0.02), (1.0, 1.31, 0.03))
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)
BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)
JPEG_QUALITY = (25, 18, 15, 10, 7)
RAIN_DENSITY = (0.004, 0.008, 0.012, 0.018, 0.025)
RAIN_LENGTH_FRAC = (0.10, 0.13, 0.16, 0.19, 0.22)
RAIN_OPACITY = (0.45, 0.5, 0.55, 0.6, 0.65)
RAIN_DIM = (0.05, 0.08, 0.11, 0.14, 0.17)
RAIN_COLOUR = 0.85
H265_QUALITY = (35, 25, 15, 10, 6)
H265_SKIP_THRESHOLD = (0.01, 0.02, 0.03, 0.045, 0.06)


def gaussian_noise(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """x + N(0, sigma^2), sigma per severity (ImageNet-C)."""
    return x + GAUSSIAN_SIGMA[severity - 1] * _randn(gen, _noise_shape(x, shared), x)


def shot_noise(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Poisson(lam * x) / lam, lam = photons per unit intensity (ImageNet-C). With ``shared`` noise the normal
    approximation x + sqrt(x / lam) * z with one z for all frames is used (a Poisson draw cannot be shared)."""
    lam = float(SHOT_PHOTONS[severity - 1])
    if shared:
        z = _randn(gen, _noise_shape(x, True), x)
        return x + torch.sqrt(x.clamp_min(0) / lam) * z
    rate = (x.clamp(0, 1) * lam).float().cpu()
    return (torch.poisson(rate, generator=gen) / lam).to(device=x.device, dtype=x.dtype)


def impulse_noise(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Salt-and-pepper on individual channel values (skimage ``s&p``, as ImageNet-C): a fraction ``amount`` of the
    values is replaced, half by 1 and half by 0."""
    shape = _noise_shape(x, shared)
    u, v = _rand(gen, shape, x), _rand(gen, shape, x)
    hit = u < IMPULSE_AMOUNT[severity - 1]
    return torch.where(hit, (v < 0.5).to(x.dtype), x)


def _whole_pixel(x: Tensor, severity: int, gen: torch.Generator, shared: bool, value: float) -> Tensor:
    u = _rand(gen, _noise_shape(x, shared, channels=1), x)
    return torch.where(u < SALT_PEPPER_AMOUNT[severity - 1], torch.full_like(x, value), x)


def salt(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """A fraction ``amount`` of whole pixels set to white [reconstruction: ImageNet-C impulse amounts]."""
    return _whole_pixel(x, severity, gen, shared, 1.0)


def pepper(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """A fraction ``amount`` of whole pixels set to black [reconstruction: ImageNet-C impulse amounts]."""
    return _whole_pixel(x, severity, gen, shared, 0.0)


def defocus_blur(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Disk kernel, radius = ImageNet-C's (3, 4, 6, 8, 10) px at 224 px, scaled, at least 0.75 px."""
    radius = max(DEFOCUS_MIN_RADIUS, DEFOCUS_RADIUS_224[severity - 1] * _scale(*x.shape[-2:]))
    return _filter_frames(x, disk_kernel(radius))


def motion_blur(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """One-sided Gaussian-weighted line kernel (ImageNet-C: length 2r + 1, weight sigma), angle ~ U(-45, 45) deg,
    one angle per clip (all frames)."""
    s = _scale(*x.shape[-2:])
    angles = (torch.rand(x.shape[0], generator=gen) * 90.0 - 45.0).tolist()
    length = (2 * MOTION_RADIUS_224[severity - 1] + 1) * s
    sigma = MOTION_SIGMA_224[severity - 1] * s
    return torch.cat([_filter_frames(x[i : i + 1], line_kernel(length, a, sigma)) for i, a in enumerate(angles)])


def zoom_blur(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Mean of the frame and its centre zooms by the factors ``arange(start, stop, step)`` (ImageNet-C)."""
    b, t, c, h, w = x.shape
    start, stop, step = ZOOM_FACTORS[severity - 1]
    factors = torch.arange(start, stop, step).tolist()[1:]  # factor 1.0 is the frame itself
    flat = x.reshape(b * t, c, h, w)
    out = flat.clone()
    for z in factors:
        theta = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(b * t, 2, 3), list(flat.shape), align_corners=False)
        out = out + F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (out / (len(factors) + 1)).reshape(b, t, c, h, w)


def contrast(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """(x - m) * c + m, m = the frame's mean intensity (ImageNet-C)."""
    m = x.mean(dim=(-3, -2, -1), keepdim=True)
    return (x - m) * CONTRAST_FACTOR[severity - 1] + m


def brightness(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """HSV value V += c, clipped at 1, hue and saturation kept (ImageNet-C). Exact in RGB: RGB * V'/V (black
    pixels become grey c)."""
    c = BRIGHTNESS_SHIFT[severity - 1]
    v = x.amax(dim=-3, keepdim=True)
    v_new = (v + c).clamp(max=1.0)
    ratio = v_new / v.clamp_min(1e-8)
    return torch.where(v > 1e-8, x * ratio, v_new.expand_as(x))


def jpeg(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Pillow JPEG round trip of every frame at quality (25, 18, 15, 10, 7) (ImageNet-C)."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - Pillow is a core dependency of matplotlib
        raise MissingDependencyError("the 'jpeg' corruption needs Pillow; install it with: pip install pillow") from e
    b, t, c, h, w = x.shape
    quality = JPEG_QUALITY[severity - 1]
    frames = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).reshape(b * t, c, h, w)
    out = torch.empty(b * t, c, h, w, dtype=torch.float32)
    for i, f in enumerate(frames):
        arr = f.permute(1, 2, 0).numpy() if c == 3 else f[0].numpy()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB" if c == 3 else "L")).copy())
        out[i] = (dec.permute(2, 0, 1) if c == 3 else dec[None]).float() / 255.0
    return out.reshape(b, t, c, h, w).to(device=x.device, dtype=x.dtype)


def rain(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Streak overlay [reconstruction]: drop seeds ~ Bernoulli(density) per pixel, smeared by a line kernel of
    ``length_frac * H`` px slanted by one angle per clip (U(-20, 20) deg from vertical), blended with opacity
    ``alpha`` in light grey over a scene dimmed by ``dim``."""
    b, t, c, h, w = x.shape
    angles = (torch.rand(b, generator=gen) * 40.0 - 20.0 + 90.0).tolist()
    u = _rand(gen, _noise_shape(x, shared, channels=1), x)
    seeds = (u < RAIN_DENSITY[severity - 1]).to(x.dtype)
    length = max(1.5, RAIN_LENGTH_FRAC[severity - 1] * h)
    masks = []
    for i, a in enumerate(angles):
        k = line_kernel(length, a, centred=True, normalise=False)
        masks.append(_filter_frames(seeds[i : i + 1], k).clamp(0, 1))
    mask = torch.cat(masks)  # (B, T' , 1, H, W)
    alpha = RAIN_OPACITY[severity - 1] * mask
    scene = x * (1.0 - RAIN_DIM[severity - 1])
    return scene * (1 - alpha) + alpha * RAIN_COLOUR


# JPEG Annex K base quantisation tables (luminance, chrominance), scaled with libjpeg's quality rule
_Q_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
_Q_CHROMA = torch.full((8, 8), 99.0)
_Q_CHROMA[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]],
                                 dtype=torch.float32)


def _dct_matrix(n: int = 8) -> Tensor:
    k = torch.arange(n, dtype=torch.float32)
    m = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def quantise_blocks(plane: Tensor, table: Tensor) -> Tensor:
    """8x8 block DCT of ``plane`` (..., H, W) in [0, 1] (H, W multiples of 8), uniform quantisation by ``table``
    (in 0..255 units), inverse DCT."""
    *lead, h, w = plane.shape
    d = _dct_matrix().to(device=plane.device, dtype=plane.dtype)
    q = table.to(device=plane.device, dtype=plane.dtype)
    blocks = (plane * 255.0 - 128.0).reshape(*lead, h // 8, 8, w // 8, 8).transpose(-3, -2)
    coef = d @ blocks @ d.T
    coef = torch.round(coef / q) * q
    rec = (d.T @ coef @ d).transpose(-3, -2).reshape(*lead, h, w)
    return (rec + 128.0) / 255.0


def _quality_table(base: Tensor, quality: int) -> Tensor:
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return torch.floor((base * scale + 50.0) / 100.0).clamp(1, 255)


def _intra_code(frames: Tensor, quality: int) -> Tensor:
    """JPEG-like intra coding of frames (N, C, H, W), H and W multiples of 16: YCbCr, 4:2:0 chroma, block DCT."""
    if frames.shape[1] == 1:
        return quantise_blocks(frames, _quality_table(_Q_LUMA, quality))
    ycc = _rgb_to_ycbcr(frames)
    y = quantise_blocks(ycc[:, :1], _quality_table(_Q_LUMA, quality))
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    chroma = quantise_blocks(_pad_to(chroma, 8), _quality_table(_Q_CHROMA, quality))
    chroma = chroma[..., : frames.shape[-2] // 2, : frames.shape[-1] // 2]
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    return _ycbcr_to_rgb(torch.cat((y, chroma), dim=1))


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    lead = x.shape[:-2]
    flat = F.pad(x.reshape(-1, 1, h, w), (0, pw, 0, ph), mode="replicate")
    return flat.reshape(*lead, h + ph, w + pw)


def h265_abr(x: Tensor, severity: int, gen: torch.Generator, shared: bool) -> Tensor:
    """Low-bitrate codec artefacts [reconstruction of UCF101-C's x265 average-bitrate encode]: every frame is intra
    coded like JPEG (YCbCr 4:2:0, 8x8 DCT, quality per severity); then, for frames after the first, each 16x16
    macroblock whose mean absolute change from the previous *decoded* frame is below a threshold is skipped (copied
    from the previous decoded frame), as a rate-starved encoder does: blocking, blur, smearing and frozen blocks."""
    b, t, c, h, w = x.shape
    padded = _pad_to(x, 16)
    hp, wp = padded.shape[-2:]
    coded = _intra_code(padded.reshape(b * t, c, hp, wp), H265_QUALITY[severity - 1]).reshape(b, t, c, hp, wp)
    thr = H265_SKIP_THRESHOLD[severity - 1]
    frames = [coded[:, 0]]
    for i in range(1, t):
        prev = frames[-1]
        change = F.avg_pool2d((padded[:, i] - prev).abs().mean(dim=1, keepdim=True), 16)
        skip = F.interpolate((change < thr).to(x.dtype), scale_factor=16, mode="nearest")
        frames.append(skip * prev + (1 - skip) * coded[:, i])
    return torch.stack(frames, dim=1)[..., :h, :w]


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", gaussian_noise, {"sigma": GAUSSIAN_SIGMA}, "ImageNet-C",
                   "additive Gaussian noise", aliases=("gauss",)),
        Corruption("shot_noise", shot_noise, {"photons": SHOT_PHOTONS}, "ImageNet-C",
                   "Poisson noise, lam photons per unit intensity", aliases=("shot",)),
        Corruption("impulse_noise", impulse_noise, {"amount": IMPULSE_AMOUNT}, "ImageNet-C",
                   "salt-and-pepper on channel values", aliases=("impulse",)),
        Corruption("salt", salt, {"amount": SALT_PEPPER_AMOUNT}, "reconstruction (ImageNet-C impulse amounts)",
                   "white pixels"),
        Corruption("pepper", pepper, {"amount": SALT_PEPPER_AMOUNT}, "reconstruction (ImageNet-C impulse amounts)",
                   "black pixels"),
        Corruption("defocus_blur", defocus_blur, {"radius_at_224px": DEFOCUS_RADIUS_224}, "ImageNet-C, scaled",
                   "disk kernel", random=False, aliases=("defocus",)),
        Corruption("motion_blur", motion_blur, {"radius_at_224px": MOTION_RADIUS_224,
                                                "sigma_at_224px": MOTION_SIGMA_224}, "ImageNet-C, scaled",
                   "one-sided line kernel, random angle per clip", aliases=("motion",)),
        Corruption("zoom_blur", zoom_blur, {"zoom_arange": ZOOM_FACTORS}, "ImageNet-C",
                   "mean of centre zooms", random=False, aliases=("zoom",)),
        Corruption("contrast", contrast, {"factor": CONTRAST_FACTOR}, "ImageNet-C", "contrast reduction",
                   random=False),
        Corruption("brightness", brightness, {"v_shift": BRIGHTNESS_SHIFT}, "ImageNet-C", "HSV value shift",
                   random=False),
        Corruption("jpeg", jpeg, {"quality": JPEG_QUALITY}, "ImageNet-C (Pillow)", "JPEG round trip per frame",
                   random=False, aliases=("jpeg_compression",)),
        Corruption("rain", rain, {"density": RAIN_DENSITY, "length_frac": RAIN_LENGTH_FRAC, "opacity": RAIN_OPACITY,
                                  "dim": RAIN_DIM}, "reconstruction", "slanted streak overlay"),
        Corruption("h265_abr", h265_abr, {"quality": H265_QUALITY, "skip_threshold": H265_SKIP_THRESHOLD},
                   "reconstruction", "block DCT quantisation + skipped macroblocks", random=False, temporal=True),
    )
}

#: ViTTA's 12 UCF101-C corruption types (``tta_tanet_ucf101.py``), in its order, under our names
VIDEO_CORRUPTIONS_UCF101C: tuple[str, ...] = (
    "gaussian_noise", "pepper", "salt", "shot_noise", "zoom_blur", "impulse_noise", "defocus_blur", "motion_blur",
    "jpeg", "contrast", "rain", "h265_abr",
)
#: ViTTA's short names -> ours
VITTA_NAMES: dict[str, str] = {
    "gauss": "gaussian_noise", "pepper": "pepper", "salt": "salt", "shot": "shot_noise", "zoom": "zoom_blur",
    "impulse": "impulse_noise", "defocus": "defocus_blur", "motion": "motion_blur", "jpeg": "jpeg",
    "contrast": "contrast", "rain": "rain", "h265_abr": "h265_abr",
}
_ALIASES = {a: c.name for c in CORRUPTIONS.values() for a in c.aliases} | VITTA_NAMES


def _resolve(name: str, registry: dict, aliases: dict[str, str], what: str) -> str:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = aliases.get(key, key)
    if key not in registry:
        raise ValueError(f"unknown {what} corruption {name!r}; choose one of: {', '.join(registry)}")
    return key


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or int(severity) != severity or not 0 <= int(severity) <= 5:
        raise ValueError(f"severity must be an integer in 0..5 (0 = clean), got {severity!r}")
    return int(severity)


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    gen = torch.Generator()
    gen.manual_seed(0 if seed is None else int(seed))
    return gen


def corrupt(clip: Tensor, name: str, severity: int = 5, seed: int | None = 0, *,
            generator: torch.Generator | None = None, frame_noise: str = "independent") -> Tensor:
    """Corrupt a clip ``(T, C, H, W)`` or a batch ``(B, T, C, H, W)`` in [0, 1] with ``name`` at ``severity``.

    ``name``: a key of :data:`CORRUPTIONS` or a ViTTA short name (``gauss``, ``shot``, ...). ``severity`` 1..5
    (0 returns a copy). Randomness comes from ``generator`` (a CPU ``torch.Generator``, advanced) or else a fresh
    one seeded with ``seed``. ``frame_noise``: ``"independent"`` (a new random realisation per frame, default) or
    ``"shared"`` (one per clip, reused on every frame). Each clip of a batch gets its own realisation and angles.
    """
    key = _resolve(name, CORRUPTIONS, _ALIASES, "video")
    severity = _check_severity(severity)
    if frame_noise not in FRAME_NOISE_MODES:
        raise ValueError(f"frame_noise must be one of {FRAME_NOISE_MODES}, got {frame_noise!r}")
    if not isinstance(clip, torch.Tensor) or not clip.is_floating_point() or clip.ndim not in (4, 5):
        raise ValueError("expected a float tensor clip (T, C, H, W) or batch (B, T, C, H, W), got "
                         f"{type(clip).__name__} {tuple(getattr(clip, 'shape', ()))}")
    if clip.shape[-3] not in (1, 3):
        raise ValueError(f"expected 1 or 3 channels in dim -3 (T, C, H, W), got shape {tuple(clip.shape)}")
    if clip.numel() and (clip.min() < -1e-6 or clip.max() > 1 + 1e-6):
        raise ValueError(f"expected values in [0, 1], got [{clip.min().item():.3g}, {clip.max().item():.3g}]")
    if severity == 0:
        return clip.clone()
    x = (clip if clip.ndim == 5 else clip[None]).detach()
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    out = CORRUPTIONS[key].fn(work, severity, _generator(seed, generator), frame_noise == "shared")
    out = out.clamp(0.0, 1.0).to(clip.dtype)
    return out if clip.ndim == 5 else out[0]


# --------------------------------------------------------------------------------------------------------------
# audio corruptions: wave (..., n) float, severity 1..5
# --------------------------------------------------------------------------------------------------------------

AUDIO_SNR_DB = (20, 15, 10, 5, 0)
CLIP_LEVEL = (0.6, 0.4, 0.25, 0.15, 0.08)
MUTE_FRACTION = (0.1, 0.2, 0.3, 0.45, 0.6)
MUTE_SEGMENT_S = 0.1
LOWPASS_HZ = (4000, 2000, 1000, 500, 250)
LOWPASS_ORDER = 4
BABBLE_TALKERS = 8
SILENT_POWER = 1e-4  # reference power (-40 dBFS) for the SNR of an all-zero wave


def _scaled_to_snr(wave: Tensor, noise: Tensor, snr_db: float) -> Tensor:
    p_sig = wave.pow(2).mean(dim=-1, keepdim=True)
    p_sig = torch.where(p_sig > 0, p_sig, torch.full_like(p_sig, SILENT_POWER))
    p_noise = noise.pow(2).mean(dim=-1, keepdim=True).clamp_min(1e-20)
    return noise * torch.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))


def audio_gaussian_noise(wave: Tensor, severity: int, gen: torch.Generator, sr: int) -> Tensor:
    """White Gaussian noise at SNR (20, 15, 10, 5, 0) dB w.r.t. the wave's power."""
    noise = _randn(gen, tuple(wave.shape), wave)
    return wave + _scaled_to_snr(wave, noise, AUDIO_SNR_DB[severity - 1])


def audio_clipping(wave: Tensor, severity: int, gen: torch.Generator, sr: int) -> Tensor:
    """Hard clipping at a fraction (0.6 .. 0.08) of the wave's peak amplitude (saturated recording)."""
    peak = wave.abs().amax(dim=-1, keepdim=True)
    level = peak * CLIP_LEVEL[severity - 1]
    return torch.maximum(torch.minimum(wave, level), -level)


def audio_mute(wave: Tensor, severity: int, gen: torch.Generator, sr: int) -> Tensor:
    """A fraction (0.1 .. 0.6) of the 100-ms segments set to zero (dropouts); the segment order is drawn once, so
    a higher severity mutes a superset of the segments."""
    n = wave.shape[-1]
    seg = max(1, int(round(MUTE_SEGMENT_S * sr)))
    n_seg = math.ceil(n / seg)
    lead = wave.shape[:-1]
    order = torch.rand((*lead, n_seg), generator=gen).argsort(dim=-1)
    k = int(round(MUTE_FRACTION[severity - 1] * n_seg))
    muted = torch.zeros((*lead, n_seg), dtype=torch.bool)
    muted.scatter_(-1, order[..., :k], True)
    mask = muted.repeat_interleave(seg, dim=-1)[..., :n].to(wave.device)
    return wave.masked_fill(mask, 0.0)


def _fft_filter(wave: Tensor, gain: Tensor) -> Tensor:
    spec = torch.fft.rfft(wave.float(), dim=-1)
    return torch.fft.irfft(spec * gain.to(spec.device), n=wave.shape[-1], dim=-1).to(wave.dtype)


def audio_lowpass(wave: Tensor, severity: int, gen: torch.Generator, sr: int) -> Tensor:
    """"Muffled": zero-phase Butterworth magnitude (order 4) low-pass at (4000 .. 250) Hz, applied in the FFT domain."""
    f = torch.fft.rfftfreq(wave.shape[-1], d=1.0 / sr)
    gain = 1.0 / torch.sqrt(1.0 + (f / LOWPASS_HZ[severity - 1]) ** (2 * LOWPASS_ORDER))
    return _fft_filter(wave, gain)


def babble_noise(n: int, sr: int, gen: torch.Generator, talkers: int = BABBLE_TALKERS) -> Tensor:
    """Crowd-like babble [reconstruction]: the sum of ``talkers`` speech-like voices, each a harmonic source at a
    random pitch (90-250 Hz, slow vibrato) plus breath noise, shaped by three random formants and gated by a
    random 3-6 Hz syllabic envelope. Returns ``(n,)`` with unit power."""
    t = torch.arange(n, dtype=torch.float32) / sr
    f = torch.fft.rfftfreq(n, d=1.0 / sr)
    total = torch.zeros(n)
    for _ in range(talkers):
        r = torch.rand(8, generator=gen)
        f0 = 90 + 160 * r[0]
        pitch = f0 * (1 + 0.05 * torch.sin(2 * math.pi * (0.5 + r[1]) * t))
        phase = 2 * math.pi * torch.cumsum(pitch, 0) / sr
        harmonics = sum(torch.sin(h * phase) / h for h in range(1, 16))
        source = harmonics + 0.3 * torch.randn(n, generator=gen)
        formants = (300 + 600 * r[2], 900 + 1600 * r[3], 2500 + 1000 * r[4])
        env_f = sum(torch.exp(-0.5 * ((f - fc) / (60 + 0.08 * fc)) ** 2) for fc in formants)
        voice = torch.fft.irfft(torch.fft.rfft(source) * (env_f + 0.02), n=n)
        rate = 3 + 3 * r[5]
        syll = torch.sin(2 * math.pi * rate * t + 2 * math.pi * r[6]).clamp_min(0) ** 2
        voice = voice * syll
        total = total + voice / voice.pow(2).mean().clamp_min(1e-20).sqrt()
    return total / total.pow(2).mean().clamp_min(1e-20).sqrt()


def audio_babble(wave: Tensor, severity: int, gen: torch.Generator, sr: int) -> Tensor:
    """Crowd babble (:func:`babble_noise`, one realisation per wave) at SNR (20, 15, 10, 5, 0) dB."""
    lead, n = wave.shape[:-1], wave.shape[-1]
    count = int(torch.tensor(lead).prod().item()) if lead else 1
    noise = torch.stack([babble_noise(n, sr, gen) for _ in range(count)]).reshape(*lead, n)
    noise = noise.to(device=wave.device, dtype=wave.dtype)
    return wave + _scaled_to_snr(wave, noise, AUDIO_SNR_DB[severity - 1])


@dataclass(frozen=True)
class AudioCorruption:
    name: str
    fn: Callable[..., Tensor]
    params: dict[str, tuple]
    description: str
    aliases: tuple[str, ...] = ()


AUDIO_CORRUPTIONS: dict[str, AudioCorruption] = {
    c.name: c
    for c in (
        AudioCorruption("gaussian_noise", audio_gaussian_noise, {"snr_db": AUDIO_SNR_DB}, "white noise at an SNR",
                        ("gauss", "noise")),
        AudioCorruption("clipping", audio_clipping, {"level_of_peak": CLIP_LEVEL}, "hard clipping", ("clip",)),
        AudioCorruption("mute", audio_mute, {"fraction": MUTE_FRACTION}, "muted 100-ms segments",
                        ("dropout", "muting")),
        AudioCorruption("lowpass", audio_lowpass, {"cutoff_hz": LOWPASS_HZ}, "muffled (Butterworth low-pass)",
                        ("muffle", "muffled")),
        AudioCorruption("babble", audio_babble, {"snr_db": AUDIO_SNR_DB}, "crowd babble at an SNR", ("crowd",)),
    )
}
_AUDIO_ALIASES = {a: c.name for c in AUDIO_CORRUPTIONS.values() for a in c.aliases}


def corrupt_audio(wave: Tensor, name: str, severity: int = 5, seed: int | None = 0, *, sample_rate: int = 16000,
                  generator: torch.Generator | None = None) -> Tensor:
    """Corrupt a mono wave ``(n,)`` (or a batch ``(..., n)``) with one of :data:`AUDIO_CORRUPTIONS`.

    Same shape and dtype out; not clipped to [-1, 1] (only ``clipping`` saturates). ``severity`` 0 returns a copy.
    """
    key = _resolve(name, AUDIO_CORRUPTIONS, _AUDIO_ALIASES, "audio")
    severity = _check_severity(severity)
    if not isinstance(wave, torch.Tensor) or not wave.is_floating_point() or wave.ndim < 1:
        raise ValueError(f"expected a float tensor wave (n,) or (..., n), got {type(wave).__name__}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if severity == 0 or wave.shape[-1] == 0:
        return wave.clone()
    work = wave.detach().float() if wave.dtype in (torch.float16, torch.bfloat16) else wave.detach()
    out = AUDIO_CORRUPTIONS[key].fn(work, severity, _generator(seed, generator), int(sample_rate))
    return out.to(wave.dtype)


__all__ = [
    "AUDIO_CORRUPTIONS", "CORRUPTIONS", "Corruption", "AudioCorruption", "VIDEO_CORRUPTIONS_UCF101C", "VITTA_NAMES",
    "babble_noise", "corrupt", "corrupt_audio", "disk_kernel", "line_kernel", "quantise_blocks",
]
