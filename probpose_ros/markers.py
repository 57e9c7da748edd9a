"""People -> ``visualization_msgs/MarkerArray`` for RViz.

Markers live in the input image's frame (``header`` copied). A pixel ``(u, v)`` becomes the
point ``(u * pixel_size, v * pixel_size, 0)``: RViz shows the image plane as the plane z = 0 of
that frame, x right and y down as in the image (the camera's optical frame convention), with
1 px = ``pixel_size`` metres (default 1 mm: a 640x480 image spans 0.64 x 0.48 m).

Per person ``i`` (its id in the HumanArray, see :func:`messages.order_humans`; namespaces
below, marker ids unique within a namespace):

- ``keypoints``: one SPHERE_LIST with all 17 keypoints, each coloured by its presence
  (:func:`probpose_core.overlay.presence_color`: red absent -> green present);
- ``skeleton``: one LINE_LIST with the limbs of ``keypoints.SKELETON`` whose BOTH ends are
  present (presence >= ``presence_threshold``), vertices coloured by presence;
- ``regions``: one closed LINE_STRIP per credible-region outline (at ``credible_level``) of each
  present keypoint, in its presence colour;
- ``boxes``: the person box as a closed LINE_STRIP; ``ids``: a TEXT_VIEW_FACING label
  ``"<i> <score>"`` above the box.

Empty markers are left out. The array starts with a DELETEALL marker (``clear=True``) so people
who left the image disappear at once, and every marker has ``lifetime`` so all of them vanish
when the node stops publishing.
"""
import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from probpose_core.keypoints import SKELETON
from probpose_core.overlay import presence_color

from .messages import copy_header, order_humans, regions_at

BOX_RGB = (80, 160, 255)  # the overlay's box colour
TEXT_RGB = (255, 255, 255)


def to_duration(seconds: float) -> Duration:
    """Seconds -> ``builtin_interfaces/Duration``."""
    sec = math.floor(seconds)
    return Duration(sec=int(sec), nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def rgba(rgb, alpha: float = 1.0) -> ColorRGBA:
    """8-bit ``(r, g, b)`` -> ``std_msgs/ColorRGBA`` in [0, 1]."""
    r, g, b = rgb
    return ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=float(alpha))


def _point(u: float, v: float, pixel_size: float) -> Point:
    return Point(x=float(u) * pixel_size, y=float(v) * pixel_size, z=0.0)


def humans_to_markers(humans, header, presence_threshold: float = 0.5, credible_level: float | None = 0.5,
                      pixel_size: float = 0.001, lifetime: float = 0.5, point_px: float = 6.0,
                      line_px: float = 2.0, text_px: float = 14.0, clear: bool = True) -> MarkerArray:
    """Markers of the people ``humans (list[Human], image px)`` of the image with ``header``.

    pixel_size: metres per pixel; lifetime: seconds a marker stays without being refreshed;
    point_px / line_px / text_px: sphere diameter, line width and text height in pixels.
    """
    def marker(ns: str, marker_id: int, kind: int, width_px: float) -> Marker:
        m = Marker(header=copy_header(header), ns=ns, id=marker_id, type=kind, action=Marker.ADD,
                   lifetime=to_duration(lifetime), frame_locked=False)
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = width_px * pixel_size
        return m

    markers = []
    if clear:
        markers.append(Marker(header=copy_header(header), action=Marker.DELETEALL))
    region_id = 0
    for i, h in enumerate(order_humans(humans)):
        xy = np.array([[k.x, k.y] for k in h.keypoints], dtype=np.float64).reshape(-1, 2)
        presence = np.array([k.presence for k in h.keypoints], dtype=np.float64)
        present = presence >= presence_threshold
        colors = [rgba(presence_color(p)) for p in presence]
        points = [_point(u, v, pixel_size) for u, v in xy]

        spheres = marker("keypoints", i, Marker.SPHERE_LIST, point_px)
        spheres.points, spheres.colors = points, colors
        markers.append(spheres)

        limbs = [(a, b) for a, b in SKELETON if a < len(xy) and b < len(xy) and present[a] and present[b]]
        if limbs:
            lines = marker("skeleton", i, Marker.LINE_LIST, line_px)
            lines.points = [points[k] for limb in limbs for k in limb]
            lines.colors = [colors[k] for limb in limbs for k in limb]
            markers.append(lines)

        if credible_level:
            for k, kp in enumerate(h.keypoints):
                if not present[k]:
                    continue
                for poly in regions_at(kp.regions, float(credible_level)):
                    outline = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
                    if len(outline) < 2:
                        continue
                    strip = marker("regions", region_id, Marker.LINE_STRIP, line_px / 2)
                    strip.points = [_point(u, v, pixel_size) for u, v in np.vstack([outline, outline[:1]])]
                    strip.color = colors[k]
                    markers.append(strip)
                    region_id += 1

        x, y, w, bh = (float(v) for v in h.bbox)
        box = marker("boxes", i, Marker.LINE_STRIP, line_px)
        box.points = [_point(u, v, pixel_size) for u, v in ((x, y), (x + w, y), (x + w, y + bh), (x, y + bh), (x, y))]
        box.color = rgba(BOX_RGB)
        markers.append(box)

        label = marker("ids", i, Marker.TEXT_VIEW_FACING, text_px)
        label.text = f"{i} {float(h.box_score):.2f}"
        label.pose.position = _point(x, y - text_px, pixel_size)
        label.color = rgba(TEXT_RGB)
        markers.append(label)
    return MarkerArray(markers=markers)
