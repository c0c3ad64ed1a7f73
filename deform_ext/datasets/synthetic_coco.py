"""A synthetic COCO-format detection data set: coloured shapes on textured backgrounds.

Every image is drawn from its own random generator, ``PCG64(SeedSequence((seed,
split_code, index)))``, so the output is byte-identical for a given seed whatever
the order of generation, and train and val images never share a stream.

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

Annotations are amodal: ``segmentation`` is the polygon of the full shape, ``bbox``
its extent ``[x, y, w, h]`` (the full shape's box, not the visible part's) and
``area`` the pixel count of the full rasterised shape. Annotations are listed in
painting order, so a later annotation of an image may cover an earlier one.
"""
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

CLASSES = ('circle', 'square', 'triangle', 'star', 'ring', 'cross')
GENERATOR_VERSION = 1
SPLITS = ('train', 'val')
MANIFEST_NAME = 'manifest.json'
SMALL_AREA, LARGE_AREA = 32**2, 96**2  # COCO's size buckets
MIN_COLOUR_DISTANCE = 120.0  # RGB distance of a shape's colour to the background's
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


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of ``split``: independent of all others."""
    entropy = (seed, SPLITS.index(split), index)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def _annotation(shape: PlacedShape, *, annotation_id: int, image_id: int) -> dict:
    """The COCO annotation of ``shape``: amodal polygon, its extent and area."""
    polygon = np.round(shape.polygon, 2)
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    return dict(id=annotation_id, image_id=image_id, category_id=shape.label + 1,
                bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                area=float(shape.area), iscrowd=0,
                segmentation=[polygon.ravel().tolist()])


def _generate_split(out_dir: Path, split: str, parameters: dict) -> dict:
    """Write the PNG images of ``split``, removing stale ones; returns its COCO dict."""
    image_dir = out_dir / split
    image_dir.mkdir(parents=True, exist_ok=True)
    side_low, side_high = parameters['image_size']
    images, annotations = [], []
    for index in range(parameters[f'num_{split}']):
        rng = _image_rng(parameters['seed'], split, index)
        width, height = rng.integers(side_low, side_high + 1, size=2)
        image, shapes = render_image(
            rng, int(height), int(width),
            objects_per_image=parameters['objects_per_image'],
            object_size=parameters['object_size'],
            min_visible_fraction=parameters['min_visible_fraction'])
        image_id, file_name = index + 1, f'{index + 1:06d}.png'
        Image.fromarray(image).save(image_dir / file_name, format='PNG',
                                    compress_level=3)
        images.append(dict(id=image_id, file_name=file_name, width=int(width),
                           height=int(height)))
        for shape in shapes:
            annotations.append(_annotation(shape, annotation_id=len(annotations) + 1,
                                           image_id=image_id))
    written = {image['file_name'] for image in images}
    for stale in image_dir.glob('*.png'):
        if stale.name not in written:
            stale.unlink()
    return dict(
        info=dict(description=f'deform_ext synthetic shapes, {split} split',
                  version=str(GENERATOR_VERSION), contributor='deform_ext'),
        licenses=[dict(id=1, name='generated by deform_ext, no restrictions', url='')],
        images=images, annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(CLASSES)])


def summarise(coco: dict) -> dict:
    """Counts of a COCO dict: images, objects, objects per image, per class, per
    COCO size bucket (area < 32**2 small, < 96**2 medium, else large)."""
    names = {category['id']: category['name'] for category in coco['categories']}
    image_ids = np.array([ann['image_id'] for ann in coco['annotations']], dtype=int)
    per_image = np.bincount(image_ids, minlength=len(coco['images']) + 1)[1:]
    areas = np.array([ann['area'] for ann in coco['annotations']])
    buckets = np.bincount(np.digitize(areas, [SMALL_AREA, LARGE_AREA]), minlength=3)
    per_class = {name: 0 for name in names.values()}
    for ann in coco['annotations']:
        per_class[names[ann['category_id']]] += 1
    return dict(
        images=len(coco['images']), objects=len(coco['annotations']),
        objects_per_image=dict(min=int(per_image.min()), max=int(per_image.max()),
                               mean=round(float(per_image.mean()), 2)),
        per_class=per_class,
        size_buckets=dict(zip(('small', 'medium', 'large'), buckets.tolist())))


def _write_json_atomically(path: Path, content: dict, *,
                           indent: int | None = None) -> None:
    """Write ``content`` to ``path`` via a temporary file, so ``path`` is whole."""
    temporary = path.with_name(path.name + '.tmp')
    separators = None if indent else (',', ':')
    temporary.write_text(json.dumps(content, indent=indent, separators=separators))
    os.replace(temporary, path)


def _checked_pair(name: str, value, *, minimum: float, kind: type) -> list:
    """``value`` as a [low, high] list with minimum <= low <= high, else ValueError."""
    allowed = (int, float) if kind is float else (int,)
    pair = [value, value] if isinstance(value, allowed) else value
    if (not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(isinstance(v, allowed) and not isinstance(v, bool) for v in pair)
            or not minimum <= pair[0] <= pair[1]):
        raise ValueError(f'{name} must be a {kind.__name__} >= {minimum} or a pair '
                         f'(low, high) of them with low <= high, got {value!r}')
    return [kind(v) for v in pair]


def _checked_count(name: str, value, *, minimum: int) -> int:
    """``value`` if it is an int >= minimum, else ValueError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')
    return value


def _checked_out_dir(out_dir) -> Path:
    """``out_dir`` as a Path, or ValueError if it is empty or an existing file."""
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise ValueError(f'out_dir must be a non-empty path, got {out_dir!r}')
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f'out_dir {str(path)!r} exists and is not a directory')
    return path


def _stored_split_summaries(out_dir: Path, parameters: dict) -> dict | None:
    """The stored split summaries if ``out_dir`` holds a complete generation with
    exactly ``parameters``, else None."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if manifest.get('parameters') != parameters:
        return None
    for split in SPLITS:
        annotation_file = out_dir / 'annotations' / f'instances_{split}.json'
        num_images = len(list((out_dir / split).glob('*.png')))
        if not annotation_file.is_file() or num_images != parameters[f'num_{split}']:
            return None
    return manifest['splits']


def generate_synthetic_coco(out_dir, *, num_train: int = 300, num_val: int = 100,
                            image_size: int | tuple[int, int] = 256, seed: int = 0,
                            objects_per_image: tuple[int, int] = (2, 12),
                            object_size: tuple[float, float] = (8, 230),
                            min_visible_fraction: float = 0.4,
                            reuse_existing: bool = False) -> dict:
    """Generate the data set in ``out_dir``; returns its summary.

    Args:
        out_dir: directory to write (created if missing).
        num_train, num_val: numbers of images per split (>= 1).
        image_size: side length in pixels (>= 32), or a (low, high) range from
            which each image's width and height are drawn.
        seed: non-negative int; the same arguments give byte-identical files.
        objects_per_image: (low, high) range of shapes drawn per image; fewer
            remain only when a shape finds no place even at the smallest size.
        object_size: (low, high) range of circumscribed shape diameters, pixels.
        min_visible_fraction: least visible fraction of every annotated shape.
        reuse_existing: return the stored summary, generating nothing, when
            ``out_dir`` holds a complete generation with the same arguments and
            generator version.

    Writes ``train/*.png``, ``val/*.png``, ``annotations/instances_{train,val}.json``
    and, last, ``manifest.json`` (arguments, generator version and split
    summaries), removing any earlier manifest first, so that a manifest marks a
    complete generation; every file is a function of the arguments alone. Returns
    ``splits`` (per split: see summarise), ``seconds`` taken and ``reused``.
    """
    out_path = _checked_out_dir(out_dir)
    if (not isinstance(min_visible_fraction, (int, float))
            or not 0 < min_visible_fraction <= 1):
        raise ValueError('min_visible_fraction must be in (0, 1], '
                         f'got {min_visible_fraction!r}')
    parameters = dict(
        generator_version=GENERATOR_VERSION,
        num_train=_checked_count('num_train', num_train, minimum=1),
        num_val=_checked_count('num_val', num_val, minimum=1),
        image_size=_checked_pair('image_size', image_size, minimum=32, kind=int),
        seed=_checked_count('seed', seed, minimum=0),
        objects_per_image=_checked_pair('objects_per_image', objects_per_image,
                                        minimum=1, kind=int),
        object_size=_checked_pair('object_size', object_size, minimum=4,
                                  kind=float),
        min_visible_fraction=float(min_visible_fraction))
    start = time.perf_counter()
    if reuse_existing and (splits := _stored_split_summaries(out_path, parameters)):
        return dict(splits=splits, seconds=round(time.perf_counter() - start, 2),
                    reused=True)
    (out_path / 'annotations').mkdir(parents=True, exist_ok=True)
    (out_path / MANIFEST_NAME).unlink(missing_ok=True)
    splits = {}
    for split in SPLITS:
        coco = _generate_split(out_path, split, parameters)
        _write_json_atomically(out_path / 'annotations' / f'instances_{split}.json',
                               coco)
        splits[split] = summarise(coco)
    _write_json_atomically(out_path / MANIFEST_NAME,
                           dict(parameters=parameters, splits=splits), indent=2)
    return dict(splits=splits, seconds=round(time.perf_counter() - start, 2),
                reused=False)
