"""Drawing the synthetic images: a textured background, then the laid-out shapes
(:mod:`.synthetic_shapes`) in flat colours that stand out from it, softened by a
slight blur."""
import numpy as np
from PIL import Image, ImageFilter

from .synthetic_shapes import PlacedShape, layout_shapes

MIN_COLOUR_DISTANCE = 120.0  # RGB distance of a shape's colour to the background's


def textured_background(rng: np.random.Generator, height: int,
                        width: int) -> tuple[np.ndarray, np.ndarray]:
    """A blurred, low-contrast texture about a random base colour.

    Sums a linear gradient, tinted blotches (upsampled coarse noise), stripes or a
    checkerboard (or neither) and pixel noise. Returns the background, uint8
    (height, width, 3), and its base colour, float64 (3,).
    """
    base = rng.uniform(40, 215, size=3)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)  # each (H, W) in [0, 1)
    gradient_angle, pattern_angle = rng.uniform(0, 2 * np.pi, size=2)
    ramp = xs * np.cos(gradient_angle) + ys * np.sin(gradient_angle)
    texture = ramp[..., None] * rng.uniform(-25, 25, size=3)
    coarse = rng.normal(size=rng.integers(2, 9, size=2)).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse).resize(
        (width, height), Image.Resampling.BILINEAR))
    texture += blotches[..., None] * rng.uniform(-10, 10, size=3)
    u = (xs * np.cos(pattern_angle) + ys * np.sin(pattern_angle)) * max(height, width)
    v = (ys * np.cos(pattern_angle) - xs * np.sin(pattern_angle)) * max(height, width)
    period, pattern_kind = rng.uniform(6, 32), rng.integers(3)
    stripes = np.sign(np.sin(2 * np.pi * u / period))
    pattern = (0.0, stripes, stripes * np.sign(np.sin(2 * np.pi * v / period)))
    texture += np.asarray(pattern[pattern_kind])[..., None] * rng.uniform(3, 10)
    texture += rng.normal(scale=rng.uniform(2, 8), size=(height, width, 3))
    image = Image.fromarray(np.clip(base + texture, 0, 255).astype(np.uint8))
    blurred = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    return np.asarray(blurred), base


def contrasting_colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A random uint8 (3,) colour at least MIN_COLOUR_DISTANCE from ``base`` (3,)."""
    for _ in range(32):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(colour - base) >= MIN_COLOUR_DISTANCE:
            return colour.round().astype(np.uint8)
    return np.where(base < 128, 255, 0).astype(np.uint8)


def render_image(rng: np.random.Generator, height: int, width: int, *,
                 objects_per_image: tuple[int, int], object_size: tuple[float, float],
                 min_visible_fraction: float) -> tuple[np.ndarray, list[PlacedShape]]:
    """One image, uint8 (height, width, 3), and its shapes in painting order."""
    background, base = textured_background(rng, height, width)
    num_shapes = rng.integers(objects_per_image[0], objects_per_image[1] + 1)
    shapes, owner = layout_shapes(rng, height, width, num_shapes=num_shapes,
                                  object_size=object_size,
                                  min_visible_fraction=min_visible_fraction)
    palette = np.array([contrasting_colour(rng, base) for _ in shapes],
                       dtype=np.uint8).reshape(-1, 3)
    image = background.copy()
    covered = owner >= 0
    image[covered] = palette[owner[covered]]
    softened = Image.fromarray(image).filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(softened), shapes
