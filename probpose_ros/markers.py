"""People -> ``visualization_msgs/MarkerArray`` for RViz.

Markers live in the input image's frame (``header`` copied). A pixel ``(u, v)`` becomes the
point ``(u * pixel_size, v * pixel_size, 0)``: RViz shows the image plane as the plane z = 0 of
that frame, x right and y down as in the image (the camera's optical frame convention), with
1 px = ``pixel_size`` metres (default 1 mm: a 640x480 image spans 0.64 x 0.48 m).

Per person ``i`` (its id in the HumanArray, see :func:`messages.order_humans`), five markers
at most, each with id ``i`` in its namespace:

- ``keypoints``: one SPHERE_LIST with all 17 keypoints, each coloured by its presence
  (:func:`probpose_core.overlay.presence_color`: red absent -> green present);
- ``skeleton``: one LINE_LIST with the limbs of ``keypoints.SKELETON`` whose BOTH ends are
  present (presence >= ``presence_threshold``), vertices coloured by presence;
- ``regions``: one LINE_LIST with the edges of every credible-region outline (at
  ``credible_level``) of every present keypoint -- an outline of M >= 3 points gives its M
  closing edges, one of 2 points one segment, a single pixel nothing -- each vertex in the
  presence colour of its keypoint;
- ``boxes``: the person box as a closed LINE_STRIP; ``ids``: a TEXT_VIEW_FACING label
  ``"<i> <score>"`` above the box.

Empty markers are left out. The array starts with a DELETEALL marker (``clear=True``) so people
who left the image disappear at once, and every marker has ``lifetime`` so all of them vanish
when the node stops publishing.

Speed: building and publishing a Marker costs ~30-70 us whatever it holds, and every Point /
ColorRGBA ~2-3 us, so there are few markers (lists, not one marker per keypoint or outline);
markers are shallow copies of one prototype per call (their header, pose, scale, lifetime are
shared within the array: treat the result as read-only), points are made with
:func:`messages.fast_xy` and each colour object is made once and reused.
"""
import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from probpose_core.keypoints import SKELETON
from probpose_core.overlay import presence_colors

from .messages import copy_header, fast_xy, order_humans, regions_at, shallow_copy

BOX_RGB = (80, 160, 255)  # the overlay's box colour
TEXT_RGB = (255, 255, 255)

_point = fast_xy(Point)
_SKELETON = np.asarray(SKELETON, dtype=np.intp).reshape(-1, 2)


def to_duration(seconds: float) -> Duration:
    """Seconds -> ``builtin_interfaces/Duration``."""
    sec = math.floor(seconds)
    return Duration(sec=int(sec), nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def rgba(rgb, alpha: float = 1.0) -> ColorRGBA:
    """8-bit ``(r, g, b)`` -> ``std_msgs/ColorRGBA`` in [0, 1]."""
    r, g, b = rgb
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(alpha))


class _Colours(dict):
    """8-bit rgb -> one shared ColorRGBA (a frame has few distinct presence colours)."""

    def __missing__(self, rgb):
        self[rgb] = colour = rgba(rgb)
        return colour


def _points(xy: np.ndarray, pixel_size: float) -> list:
    """``xy (M, 2)`` image pixels -> M ``geometry_msgs/Point`` on the image plane."""
    return [_point(u, v) for u, v in (np.asarray(xy, dtype=np.float64) * pixel_size).tolist()]


def outline_edges(vertices: list) -> list:
    """The LINE_LIST vertices of the closed outline ``vertices`` (M items): the M edges
    ``v0 v1, v1 v2, ..., v(M-1) v0`` for M >= 3, the one segment for M == 2, none for M == 1."""
    if len(vertices) < 3:
        return list(vertices) if len(vertices) == 2 else []
    return [v for edge in zip(vertices, vertices[1:] + vertices[:1]) for v in edge]


def humans_to_markers(humans, header, presence_threshold: float = 0.5, credible_level: float | None = 0.5,
                      pixel_size: float = 0.001, lifetime: float = 0.5, point_px: float = 6.0,
                      line_px: float = 2.0, text_px: float = 14.0, clear: bool = True) -> MarkerArray:
    """Markers of the people ``humans (list[Human], image px)`` of the image with ``header``.

    pixel_size: metres per pixel; lifetime: seconds a marker stays without being refreshed;
    point_px / line_px / text_px: sphere diameter, line width and text height in pixels.
    """
    proto = Marker(header=copy_header(header), action=Marker.ADD, lifetime=to_duration(lifetime), frame_locked=False)
    proto.pose.orientation.w = 1.0
    scales = {}
    colours = _Colours()

    def marker(ns: str, marker_id: int, kind: int, width_px: float) -> Marker:
        m = shallow_copy(proto)
        m.ns, m.id, m.type = ns, marker_id, kind
        if width_px not in scales:
            scales[width_px] = Vector3(x=width_px * pixel_size, y=width_px * pixel_size, z=width_px * pixel_size)
        m.scale = scales[width_px]
        return m

    markers = []
    if clear:
        delete_all = shallow_copy(proto)
        delete_all.action = Marker.DELETEALL
        markers.append(delete_all)
    for i, h in enumerate(order_humans(humans)):
        xy = np.array([(k.x, k.y) for k in h.keypoints], dtype=np.float64).reshape(-1, 2)
        presence = np.array([k.presence for k in h.keypoints], dtype=np.float64)
        present = presence >= presence_threshold
        colors = [colours[c] for c in presence_colors(presence)]
        points = _points(xy, pixel_size)

        spheres = marker("keypoints", i, Marker.SPHERE_LIST, point_px)
        spheres.points, spheres.colors = points, colors
        markers.append(spheres)

        limbs = _SKELETON[(_SKELETON < len(xy)).all(axis=1)]
        ends = limbs[present[limbs].all(axis=1)].reshape(-1).tolist()
        if ends:
            lines = marker("skeleton", i, Marker.LINE_LIST, line_px)
            lines.points = [points[k] for k in ends]
            lines.colors = [colors[k] for k in ends]
            markers.append(lines)

        if credible_level:
            polys = [(k, np.reshape(poly, (-1, 2))) for k, kp in enumerate(h.keypoints) if present[k]
                     for poly in regions_at(kp.regions, float(credible_level))]
            corners = _points(np.concatenate([poly for _, poly in polys]), pixel_size) if polys else []
            edges, edge_colors, start = [], [], 0
            for k, poly in polys:  # each corner Point serves both edges that meet there
                vertices = outline_edges(corners[start:start + len(poly)])
                start += len(poly)
                edges.extend(vertices)
                edge_colors.extend([colors[k]] * len(vertices))
            if edges:
                outlines = marker("regions", i, Marker.LINE_LIST, line_px / 2)
                outlines.points, outlines.colors = edges, edge_colors
                markers.append(outlines)

        x, y, w, bh = (float(v) for v in h.bbox)
        box = marker("boxes", i, Marker.LINE_STRIP, line_px)
        box.points = _points([(x, y), (x + w, y), (x + w, y + bh), (x, y + bh), (x, y)], pixel_size)
        box.color = colours[BOX_RGB]
        markers.append(box)

        label = marker("ids", i, Marker.TEXT_VIEW_FACING, text_px)
        label.text = f"{i} {float(h.box_score):.2f}"
        label.pose = Pose()
        label.pose.position = _point(x * pixel_size, (y - text_px) * pixel_size)
        label.pose.orientation.w = 1.0
        label.color = colours[TEXT_RGB]
        markers.append(label)
    return MarkerArray(markers=markers)
