"""People -> ``visualization_msgs/MarkerArray`` for RViz.

Markers live in the input image's frame (``header`` copied). A pixel ``(u, v)`` becomes the
point ``(u * pixel_size, v * pixel_size, 0)``: RViz shows the image plane as the plane z = 0 of
that frame, x right and y down as in the image (the camera's optical frame convention), with
1 px = ``pixel_size`` metres (default 1 mm: a 640x480 image spans 0.64 x 0.48 m).

All people of the image share one marker per kind (id 0 in its namespace), coloured as the
annotated image (:mod:`probpose_core.overlay`) colours the same things; only the labels are per
person:

- ``keypoints``: one SPHERE_LIST with every person's 17 keypoints, each coloured by its presence
  (:func:`probpose_core.overlay.presence_color`: red absent -> green present);
- ``skeleton``: one LINE_LIST in ``LIMB_RGB`` with the limbs of ``keypoints.SKELETON`` whose
  BOTH ends are present (presence >= ``presence_threshold``);
- ``regions/left``, ``regions/right``, ``regions/centre``: one LINE_LIST per body side
  (:func:`probpose_core.overlay.body_side`) in its ``SIDE_RGB`` colour with the edges of every
  credible-region outline (at ``credible_level``) of the side's present keypoints -- an outline of
  M >= 3 points gives its M closing edges, one of 2 points one segment, a single pixel nothing;
- ``boxes``: one LINE_LIST in ``BOX_RGB`` with the 4 edges of every person box;
- ``ids``: per person ``i`` (its index in the HumanArray, see :func:`messages.order_humans`) a
  TEXT_VIEW_FACING label ``"<i> <score>"`` above its box, id ``i``.

Empty markers are left out. The array starts with a DELETEALL marker (``clear=True``) so people
who left the image disappear at once, and every marker has ``lifetime`` so all of them vanish
when the node stops publishing.

The array is built as numpy arrays (all people at once) and serialised straight from them
(:mod:`probpose_ros.cdr`); the node publishes the bytes, rclpy sends them as they are. One
marker per kind rather than per person, keypoint or outline: RViz draws a LINE_LIST of many
segments as cheaply as one.
"""
import math

import numpy as np
from builtin_interfaces.msg import Duration
from visualization_msgs.msg import Marker

from probpose_core.keypoints import SKELETON
from probpose_core.overlay import BOX_RGB, LIMB_RGB, SIDE_RGB, body_side, presence_colors

from .cdr import MarkerSpec, serialize_markers
from .messages import order_humans, regions_at

TEXT_RGB = (255, 255, 255)
_SKELETON = np.asarray(SKELETON, dtype=np.intp).reshape(-1, 2)


def to_duration(seconds: float) -> Duration:
    """Seconds -> ``builtin_interfaces/Duration``."""
    sec = math.floor(seconds)
    return Duration(sec=int(sec), nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def rgba(rgb, alpha: float = 1.0) -> tuple:
    """8-bit ``(r, g, b)`` -> ``(r, g, b, a)`` in [0, 1]."""
    r, g, b = rgb
    return (r / 255.0, g / 255.0, b / 255.0, float(alpha))


def outline_edges(sizes) -> np.ndarray:
    """LINE_LIST vertex indices of closed outlines of ``sizes (P,)`` points stored one after the
    other: an outline of M >= 3 points gives its M edges ``v0 v1, v1 v2, ..., v(M-1) v0``, one
    of 2 points its one segment, one of 1 point nothing. Returns ``(2 * edges,)`` intp."""
    sizes = np.asarray(sizes, dtype=np.intp).reshape(-1)
    starts = np.cumsum(sizes) - sizes
    first = np.repeat(starts, sizes)  # per vertex: where its outline starts
    size = np.repeat(sizes, sizes)
    vertex = np.arange(int(sizes.sum()), dtype=np.intp)
    local = vertex - first
    keep = (size >= 3) | ((size == 2) & (local == 0))
    nxt = first + (local + 1) % np.maximum(size, 1)
    return np.stack([vertex[keep], nxt[keep]], axis=1).reshape(-1)


def humans_to_markers(humans, header, presence_threshold: float, credible_level: float | None = 0.5,
                      pixel_size: float = 0.001, lifetime: float = 0.5, point_px: float = 6.0, line_px: float = 2.0,
                      text_px: float = 14.0, clear: bool = True) -> bytes:
    """The serialised ``MarkerArray`` (CDR bytes: publish them as they are, or
    ``rclpy.serialization.deserialize_message(b, MarkerArray)``) of the people ``humans
    (list[Human], image px)`` of the image with ``header``.

    presence_threshold: keypoints below it are absent (the pipeline's, i.e. the model's ModelSpec's
    unless overridden; required); pixel_size: metres per pixel; lifetime: seconds a marker stays
    without being refreshed;
    point_px / line_px / text_px: sphere diameter, line width and text height in pixels.
    """
    def marker(ns: str, marker_id: int, kind: int, width_px: float, xy, color, colors=None, text: str = "",
               at=(0.0, 0.0)) -> MarkerSpec:
        """One ADD marker; ``xy (N, 2)`` image px, ``colors (N, 3)`` per vertex in [0, 1] or None."""
        size = width_px * pixel_size
        rgba_ = _NO_COLORS if colors is None else np.column_stack([colors, np.ones(len(colors))])
        return MarkerSpec(ns=ns, id=marker_id, type=kind, action=Marker.ADD, scale=(size, size, size), color=color,
                          points=_on_plane(xy, pixel_size), colors=rgba_, text=text,
                          position=(at[0] * pixel_size, at[1] * pixel_size, 0.0))

    out = [MarkerSpec(action=Marker.DELETEALL)] if clear else []
    people = order_humans(humans)
    xyp = np.array([(k.x, k.y, k.presence) for h in people for k in h.keypoints], dtype=np.float64).reshape(-1, 3)
    present = xyp[:, 2] >= presence_threshold
    sizes = [len(h.keypoints) for h in people]
    starts = np.cumsum([0] + sizes[:-1]).tolist()
    ends = [j for start, k in zip(starts, sizes) for j in _limb_ends(present[start:start + k], start)]
    boxes = np.array([h.bbox for h in people], dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    corners = np.stack([x0, y0, x1, y0, x1, y1, x0, y1], axis=1).reshape(-1, 2)
    if len(xyp):
        out.append(marker("keypoints", 0, Marker.SPHERE_LIST, point_px, xyp[:, :2], _WHITE,
                          colors=np.array(presence_colors(xyp[:, 2]), dtype=np.float64).reshape(-1, 3) / 255.0))
    if ends:
        out.append(marker("skeleton", 0, Marker.LINE_LIST, line_px, xyp[ends, :2], rgba(LIMB_RGB)))
    outlines = _region_lines(people, present, starts, float(credible_level)) if credible_level else {}
    for side, rgb in SIDE_RGB.items():  # left, right, centre
        if side in outlines:
            out.append(marker(f"regions/{side}", 0, Marker.LINE_LIST, line_px / 2, outlines[side], rgba(rgb)))
    if len(corners):
        out.append(marker("boxes", 0, Marker.LINE_LIST, line_px, corners[_box_edges(len(people))], rgba(BOX_RGB)))
    for i, h in enumerate(people):
        out.append(marker("ids", i, Marker.TEXT_VIEW_FACING, text_px, _NO_POINTS, rgba(TEXT_RGB),
                          text=f"{i} {float(h.box_score):.2f}", at=(float(x0[i]), float(y0[i]) - text_px)))
    stamp = (header.stamp.sec, header.stamp.nanosec)
    life = to_duration(lifetime)
    return serialize_markers(stamp, header.frame_id, out, (life.sec, life.nanosec))


_WHITE = (1.0, 1.0, 1.0, 1.0)
_NO_POINTS = np.zeros((0, 2))
_NO_COLORS = np.zeros((0, 4))


def _on_plane(xy, pixel_size: float) -> np.ndarray:
    """``xy (N, 2)`` image pixels -> ``(N, 3)`` metres on the image plane (z = 0)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.column_stack([xy * pixel_size, np.zeros(len(xy))])


def _limb_ends(present: np.ndarray, start: int) -> list:
    """LINE_LIST vertex indices (``start`` + keypoint index) of the limbs of one person whose both
    ends are ``present`` (its keypoints' flags)."""
    limbs = _SKELETON[(_SKELETON < len(present)).all(axis=1)]
    return (limbs[present[limbs].all(axis=1)].reshape(-1) + start).tolist()


def _box_edges(people: int) -> np.ndarray:
    """LINE_LIST vertex indices of the 4 edges of ``people`` boxes of 4 corners each."""
    return (np.arange(people)[:, None] * 4 + [0, 1, 1, 2, 2, 3, 3, 0]).reshape(-1)


def _region_lines(people, present: np.ndarray, starts, level: float) -> dict:
    """``body side -> (2 E, 2)`` LINE_LIST vertices (image px) of the edges of the outlines at
    ``level`` of the present keypoints (``present``: all people's keypoints one after the other,
    person ``i``'s from ``starts[i]``) on that side; sides without an edge are left out."""
    groups, polys = [], []
    for h, start in zip(people, starts):
        for j in np.flatnonzero(present[start:start + len(h.keypoints)]).tolist():
            for poly in regions_at(h.keypoints[j].regions, level):
                groups.append(body_side(j))
                polys.append(np.asarray(poly, dtype=np.float64).reshape(-1, 2))
    if not polys:
        return {}
    lengths = [len(poly) for poly in polys]
    edges = outline_edges(lengths)  # vertex pairs of every outline, in outline order
    vertices = np.concatenate(polys)[edges]
    side_of = np.repeat(groups, lengths)[edges]  # per LINE_LIST vertex
    return {side: vertices[side_of == side] for side in SIDE_RGB if (side_of == side).any()}
