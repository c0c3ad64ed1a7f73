"""The shapes of the synthetic data set: their classes, outlines, rasterisation and
placement in an image.

Geometry. A shape is a polygon in pixel-edge coordinates (pixel ``(x, y)`` covers
``[x, x + 1) x [y, y + 1)``, as in COCO) and is rasterised by an even-odd fill
sampled at pixel centres. A ring is one "keyhole" polygon: the outer circle, a
zero-width cut to the inner circle and the inner circle traversed backwards, which
encodes the hole in a single COCO polygon. Shapes lie wholly inside the image.

Occlusion. Shapes are placed in order of decreasing size; later shapes cover
earlier ones. A placement that would leave any earlier shape with less than
``min_visible_fraction`` of its pixels visible (measured on the rasterised masks) is
rejected and re-drawn elsewhere or smaller, or the new shape is dropped, so every
painted shape is annotated and at least that fraction of it is visible.
"""
from dataclasses import dataclass

import numpy as np

CLASSES = ('circle', 'square', 'triangle', 'star', 'ring', 'cross')
PLACEMENT_TRIES = 12  # random positions tried before a shape is shrunk
SHRINK_FACTOR = 0.75
SIZE_SKEW = 0.75  # exponent on the uniform variate of log-size; 1 is log-uniform


@dataclass
class PlacedShape:
    """One shape in an image: ``polygon`` is (K, 2) float64 x, y image coordinates;
    ``area`` and ``visible`` are pixel counts of the full and the visible mask."""
    label: int
    polygon: np.ndarray
    area: int
    visible: int


def rasterise_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Even-odd fill of ``polygon`` ((K, 2) x, y), sampled at pixel centres.

    Returns bool (height, width); pixel (row, col) is inside when its centre is.
    """
    start, end = polygon, np.roll(polygon, -1, axis=0)
    rows = np.arange(height)[:, None] + 0.5  # (H, 1)
    crosses = (start[:, 1] <= rows) != (end[:, 1] <= rows)  # (H, K); never horizontal
    with np.errstate(divide='ignore', invalid='ignore'):
        t = (rows - start[:, 1]) / (end[:, 1] - start[:, 1])
    x_cross = np.where(crosses, start[:, 0] + t * (end[:, 0] - start[:, 0]), -np.inf)
    columns = np.arange(width) + 0.5  # (W,)
    crossings_right = (x_cross[:, :, None] > columns).sum(axis=1)  # (H, W)
    return crossings_right % 2 == 1


def _regular_polygon(num_vertices: int, radius: float = 1.0,
                     phase: float = 0.0) -> np.ndarray:
    """(num_vertices, 2) vertices on a circle of ``radius`` about the origin."""
    angles = phase + 2 * np.pi * np.arange(num_vertices) / num_vertices
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def unit_outline(class_name: str, rng: np.random.Generator) -> np.ndarray:
    """(K, 2) outline of ``class_name`` centred at the origin, circumradius 1."""
    if class_name == 'circle':
        return _regular_polygon(48)
    if class_name == 'square':
        return _regular_polygon(4, phase=np.pi / 4)
    if class_name == 'triangle':
        return _regular_polygon(3, phase=-np.pi / 2)
    if class_name == 'star':
        tips = _regular_polygon(5, phase=-np.pi / 2)
        notches = _regular_polygon(5, radius=0.45, phase=-np.pi / 2 + np.pi / 5)
        return np.stack([tips, notches], axis=1).reshape(-1, 2)
    if class_name == 'ring':
        outer = np.concatenate([_regular_polygon(48), [[1.0, 0.0]]])
        inner = outer[::-1] * rng.uniform(0.45, 0.65)
        return np.concatenate([outer, inner])
    if class_name == 'cross':
        a = rng.uniform(0.22, 0.35)  # half-width of an arm, arm length 1
        outline = np.array([
            [a, 1], [a, a], [1, a], [1, -a], [a, -a], [a, -1],
            [-a, -1], [-a, -a], [-1, -a], [-1, a], [-a, a], [-a, 1]])
        return outline / np.hypot(1.0, a)
    raise ValueError(f'unknown class_name {class_name!r}; expected one of {CLASSES}')


def _try_to_place(rng: np.random.Generator, label: int, outline: np.ndarray,
                  owner: np.ndarray, shapes: list[PlacedShape],
                  min_visible_fraction: float) -> PlacedShape | None:
    """Place ``outline`` ((K, 2) about the origin, in pixels) at a random position
    where every earlier shape stays visible enough; paints it into ``owner`` (int16
    (H, W), index of the shape at each pixel, -1 for none) and updates ``shapes``.
    """
    local = outline + rng.uniform(0, 1, size=2)  # random sub-pixel offset
    corner = np.floor(local.min(axis=0)).astype(int)
    extent = np.ceil(local.max(axis=0)).astype(int) - corner  # (width, height)
    room = np.array(owner.shape[::-1]) - extent
    if np.any(room < 0):
        return None
    mask = rasterise_polygon(local - corner, extent[1], extent[0])  # (h, w)
    full_areas = np.array([shape.area for shape in shapes], dtype=np.int64)
    visible = np.array([shape.visible for shape in shapes], dtype=np.int64)
    for _ in range(PLACEMENT_TRIES):
        x0, y0 = rng.integers(0, room + 1)
        region = owner[y0:y0 + extent[1], x0:x0 + extent[0]]  # a view into owner
        lost = np.bincount(region[mask] + 1, minlength=len(shapes) + 1)[1:]
        if np.all(visible - lost >= min_visible_fraction * full_areas):
            for shape, lost_pixels in zip(shapes, lost):
                shape.visible -= int(lost_pixels)
            region[mask] = len(shapes)
            area = int(mask.sum())
            return PlacedShape(label=label, polygon=local - corner + (x0, y0),
                               area=area, visible=area)
    return None


def layout_shapes(rng: np.random.Generator, height: int, width: int, *,
                  num_shapes: int, object_size: tuple[float, float],
                  min_visible_fraction: float) -> tuple[list[PlacedShape], np.ndarray]:
    """Place up to ``num_shapes`` shapes, largest first, each rotated at random.

    Sizes (circumscribed diameters, pixels) lie in ``object_size``, capped at 90% of
    the shorter image side; their logarithms are uniform variates raised to the
    power SIZE_SKEW (< 1 favours large sizes), scaled to that range. A shape that
    finds no place is shrunk until it fits or falls below the smallest size.
    Returns the shapes and the int16 (height, width) map of the shape index painted
    at each pixel (-1: none).
    """
    owner = np.full((height, width), -1, dtype=np.int16)
    largest = min(object_size[1], 0.9 * min(height, width))
    smallest = min(object_size[0], largest)
    skewed = rng.uniform(size=num_shapes) ** SIZE_SKEW  # favours larger sizes
    log_sizes = np.log(smallest) + skewed * np.log(largest / smallest)
    labels = rng.integers(len(CLASSES), size=num_shapes)
    shapes: list[PlacedShape] = []
    for size, label in zip(np.sort(np.exp(log_sizes))[::-1], labels):
        angle = rng.uniform(0, 2 * np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)],
                             [np.sin(angle), np.cos(angle)]])
        outline = unit_outline(CLASSES[label], rng) @ rotation.T
        while size >= smallest:
            shape = _try_to_place(rng, int(label), outline * size / 2, owner, shapes,
                                  min_visible_fraction)
            if shape is not None:
                shapes.append(shape)
                break
            size *= SHRINK_FACTOR
    return shapes, owner
