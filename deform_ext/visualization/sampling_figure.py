"""The PNG of a :class:`~deform_ext.visualization.sampling.SamplingRecord`: one row per
chosen detection, one panel per feature level (or per head); in each, the image, the
detected box (solid white), the reference point (white star; the reference box dashed when
the decoder refines boxes) and every sampling point coloured and sized by its attention
weight (one colour scale for the whole figure, a colour bar at the right).

The figure is ``cols * panel_size + 110`` by ``rows * panel_size + 44`` pixels, exactly.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

from .sampling import (COLOUR_MAP, COLOURBAR_PX, HEADER_PX, LEVEL_MARKERS,
                       AttentionSampling, SamplingRecord)

BOX_COLOUR, REFERENCE_COLOUR = 'white', '#00e5ff'


def figure_size(rows: int, cols: int, panel_size: int) -> Tuple[int, int]:
    """(width, height) in pixels of a figure of ``rows`` × ``cols`` panels."""
    return cols * panel_size + COLOURBAR_PX, rows * panel_size + HEADER_PX


def encoder_query(sampling: AttentionSampling, box: np.ndarray, level: int) -> int:
    """The encoder token of ``level`` whose reference point is nearest the centre of
    ``box`` (xyxy pixels)."""
    shapes = sampling.spatial_shapes
    start = int((shapes[:level, 0] * shapes[:level, 1]).sum())
    end = start + int(shapes[level, 0] * shapes[level, 1])
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    distance = np.linalg.norm(sampling.references[start:end, level, :2] - centre, axis=-1)
    return start + int(distance.argmin())


def default_detections(record: SamplingRecord, count: int = 3) -> list:
    """The best ``count`` detections of distinct queries (a DETR query ranks once
    per class, so its best class comes first)."""
    first = {}
    for det, query in enumerate(record.queries.tolist()):
        first.setdefault(query, det)
    return list(first.values())[:count]


def _rows(record: SamplingRecord, sampling: AttentionSampling, source: str,
          boxes: Optional[Sequence[int]], queries: Optional[Sequence[int]],
          query_level: int):
    """(query index, detection index or None, row label) for each row."""
    rows = []
    if queries is not None:
        for query in queries:
            if not 0 <= query < len(sampling.locations):
                raise ValueError(f'query {query} does not exist: {sampling.name} has '
                                 f'{len(sampling.locations)} queries')
            found = np.flatnonzero(record.queries == query) if source == 'decoder' else []
            rows.append((int(query), int(found[0]) if len(found) else None, f'query {query}'))
        return rows
    if boxes is None:
        boxes = default_detections(record)
    for det in boxes:
        if not 0 <= det < len(record.boxes):
            raise ValueError(f'detection {det} does not exist: the image has '
                             f'{len(record.boxes)} detections')
        if source == 'decoder':
            query = int(record.queries[det])
        else:
            query = encoder_query(sampling, record.boxes[det], query_level)
        rows.append((query, det, f'query {query}'))
    return rows


def _row_extent(record: SamplingRecord, sampling: AttentionSampling, query: int,
                det: Optional[int], img_w: int, img_h: int, extent: str):
    """x and y limits of a row's panels: the image (``extent='image'``), or the image
    grown to show every sampling point, reference and box of the row (``'points'``;
    points off the image read zeros), plus a margin."""
    if extent == 'image':
        return (0, img_w), (0, img_h)
    xy = [sampling.locations[query].reshape(-1, 2), sampling.references[query, :, :2],
          np.array([[0.0, 0.0], [img_w, img_h]])]
    if sampling.references.shape[-1] == 4:
        centre, size = sampling.references[query, :, :2], sampling.references[query, :, 2:]
        xy += [centre - size / 2, centre + size / 2]
    if det is not None:
        xy.append(record.boxes[det].reshape(2, 2))
    xy = np.concatenate(xy)
    xy = xy[np.isfinite(xy).all(-1)]
    low, high = xy.min(0), xy.max(0)
    margin = 0.02 * (high - low).max()
    return (low[0] - margin, high[0] + margin), (low[1] - margin, high[1] + margin)


def _detection_label(record: SamplingRecord, det: int) -> str:
    label = int(record.labels[det])
    name = record.classes[label] if label < len(record.classes) else f'class {label}'
    return f'#{det} {name} {record.scores[det]:.2f}'


def draw_sampling(record: SamplingRecord, out: str, *, source: str = 'decoder',
                  boxes: Optional[Sequence[int]] = None,
                  queries: Optional[Sequence[int]] = None, per: str = 'level',
                  query_level: int = 0, extent: str = 'points', panel_size: int = 320,
                  dpi: int = 100, title: Optional[str] = None) -> Tuple[int, int]:
    """Write the PNG ``out`` and return its (width, height) in pixels.

    Args:
        record: from :func:`~deform_ext.visualization.collect_sampling`.
        source: ``'decoder'`` (the last decoder layer) or ``'encoder'`` (the layer
            recorded with ``encoder_layer``).
        boxes: detections to draw, indices into ``record.boxes`` (best first);
            default the best three of distinct queries. An encoder row is the token of ``query_level``
            nearest the detection's centre.
        queries: query indices instead of detections (decoder queries, or encoder
            tokens counted over all levels).
        per: ``'level'`` (a panel per level, every head in it) or ``'head'`` (a panel
            per head, every level in it, one marker shape per level).
        extent: ``'points'`` (default: each row shows all its sampling points, also
            those off the image, on grey) or ``'image'`` (the image only).
        panel_size: pixels per panel side; dpi: of the PNG (sets the text size).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    sampling = record.decoder if source == 'decoder' else record.encoder
    if source not in ('decoder', 'encoder'):
        raise ValueError(f"source must be 'decoder' or 'encoder', got {source!r}")
    if sampling is None:
        raise ValueError('no encoder layer was recorded: pass encoder_layer to collect_sampling')
    if extent not in ('points', 'image'):
        raise ValueError(f"extent must be 'points' or 'image', got {extent!r}")
    if per not in ('level', 'head'):
        raise ValueError(f"per must be 'level' or 'head', got {per!r}")
    num_heads, num_levels = sampling.weights.shape[1:3]
    if not 0 <= query_level < num_levels:
        raise ValueError(f'query_level {query_level} does not exist: {num_levels} levels')
    rows = _rows(record, sampling, source, boxes, queries, query_level)
    if not rows:
        raise ValueError('nothing to draw: the image has no detections; pass queries')
    cols = num_levels if per == 'level' else num_heads
    width, height = figure_size(len(rows), cols, panel_size)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    vmax = max(float(sampling.weights[q].max()) for q, _, _ in rows)
    norm = Normalize(0.0, vmax)
    img_h, img_w = record.image.shape[:2]
    label_px, title_px, pad = 34, 30, 4

    # a row's panels share their limits; a point beyond the image lies on grey
    for r, (query, det, row_label) in enumerate(rows):
        x_lim, y_lim = _row_extent(record, sampling, query, det, img_w, img_h, extent)
        for c in range(cols):
            left = (c * panel_size + label_px) / width
            bottom = (height - HEADER_PX - (r + 1) * panel_size + pad) / height
            ax = fig.add_axes((left, bottom, (panel_size - label_px - pad) / width,
                               (panel_size - title_px - pad) / height))
            ax.imshow(record.image, extent=(0, img_w, img_h, 0), interpolation='nearest')
            ax.set_xlim(*x_lim)
            ax.set_ylim(*y_lim[::-1])
            ax.set_facecolor('#f2f2f2')
            ax.set_xticks([])
            ax.set_yticks([])
            if det is not None:
                x1, y1, x2, y2 = record.boxes[det]
                for colour, line in (('black', 3.0), (BOX_COLOUR, 1.5)):  # seen on any image
                    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                           edgecolor=colour, linewidth=line))
            levels = [c] if per == 'level' else range(num_levels)
            heads = range(num_heads) if per == 'level' else [c]
            reference = sampling.references[query, levels[0]]
            if reference.shape[-1] == 4:
                cx, cy, bw, bh = reference
                for colour, line in (('black', 2.2), (REFERENCE_COLOUR, 1.0)):
                    ax.add_patch(Rectangle((cx - bw / 2, cy - bh / 2), bw, bh, fill=False,
                                           edgecolor=colour, linewidth=line, linestyle='--'))
            for level in levels:
                points = sampling.locations[query, list(heads), level].reshape(-1, 2)
                weights = sampling.weights[query, list(heads), level].reshape(-1)
                order = np.argsort(weights)  # heaviest on top
                ax.scatter(points[order, 0], points[order, 1], c=weights[order], cmap=COLOUR_MAP,
                           norm=norm, s=8 + 70 * weights[order] / vmax,
                           marker=LEVEL_MARKERS[level % len(LEVEL_MARKERS)] if per == 'head'
                           else 'o', edgecolors='black', linewidths=0.3, zorder=3)
            ax.scatter([reference[0]], [reference[1]], marker='*', s=160, c='white',
                       edgecolors='black', linewidths=0.8, zorder=4)
            if per == 'level':
                h, w = sampling.spatial_shapes[c]
                stride = sampling.strides[c]
                stride_text = f'{stride:g}' if float(stride).is_integer() else f'{stride:.1f}'
                name = f'level {c}: {h}×{w}, stride {stride_text}'
            else:
                name = f'head {c}'
            ax.set_title(name if r == 0 else '', fontsize=9)
            if c == 0:
                ax.set_ylabel(row_label + ('' if det is None else
                                           '\n' + _detection_label(record, det)), fontsize=8)
    cax = fig.add_axes(((cols * panel_size + 12) / width, 0.1,
                        18 / width, (height - HEADER_PX) / height * 0.8))
    fig.colorbar(ScalarMappable(norm=norm, cmap=COLOUR_MAP), cax=cax).set_label(
        'attention weight', fontsize=9)
    if per == 'head':
        handles = [Line2D([], [], marker=LEVEL_MARKERS[i % len(LEVEL_MARKERS)], linestyle='',
                          markerfacecolor='grey', markeredgecolor='black', label=f'level {i}')
                   for i in range(num_levels)]
        fig.legend(handles=handles, loc='upper right', ncol=num_levels, fontsize=7,
                   frameon=False)
    fig.suptitle(title or _default_title(sampling, source, per), fontsize=10, x=0.01,
                 ha='left', y=1 - 8 / height, va='top')
    fig.savefig(out, dpi=dpi, format='png')
    return width, height


def _default_title(sampling: AttentionSampling, source: str, per: str) -> str:
    what = 'cross-attention' if source == 'decoder' else 'self-attention'
    kind = 'the reference box (dashed)' if sampling.references.shape[-1] == 4 \
        else 'the reference point (★)'
    return (f'{sampling.name} ({what}): sampling points by attention weight, '
            f'{kind}, detected box (white); panel per {per}')
