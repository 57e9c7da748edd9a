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

The content is computed once as plain data (:func:`marker_data`: one dict per marker, the
plain data of :mod:`probpose_ros.cdr`, arrays for points and colours), then either written as
CDR bytes (``cdr.encode(MarkerArray, {"markers": data})``, what the node publishes) or turned
into message objects (:func:`markers_to_msg`; :func:`humans_to_markers` does both steps).
Building Marker objects costs ~30-70 us per marker and ~2-3 us per Point / ColorRGBA, so there
are few markers (lists, not one marker per keypoint or outline); the objects share their
header, pose, scale, lifetime and colour objects within an array: treat it as read-only.
"""
import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from probpose_core.keypoints import SKELETON
from probpose_core.overlay import BOX_RGB, presence_colors

from .messages import layout_known, fast_xy, header_data, order_humans, plain_header, regions_at, shallow_copy

TEXT_RGB = (255, 255, 255)
IDENTITY = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a Pose as plain data: position, orientation (x, y, z, w)

_point = fast_xy(Point)
_SKELETON = np.asarray(SKELETON, dtype=np.intp).reshape(-1, 2)


def duration_parts(seconds: float) -> tuple[int, int]:
    """Seconds -> ``(sec, nanosec)`` of a ``builtin_interfaces/Duration``."""
    sec = math.floor(seconds)
    return int(sec), int(round((seconds - sec) * 1e9)) % 1_000_000_000


def to_duration(seconds: float) -> Duration:
    """Seconds -> ``builtin_interfaces/Duration``."""
    sec, nanosec = duration_parts(seconds)
    return Duration(sec=sec, nanosec=nanosec)


def rgba(rgb, alpha: float = 1.0) -> tuple:
    """8-bit ``(r, g, b)`` -> ``(r, g, b, a)`` in [0, 1] (a ColorRGBA as plain data)."""
    r, g, b = rgb
    return (r / 255.0, g / 255.0, b / 255.0, float(alpha))


def _on_plane(xy, pixel_size: float) -> np.ndarray:
    """``xy (M, 2)`` image pixels -> ``(M, 3)`` float64 points on the image plane (z = 0)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    points = np.zeros((len(xy), 3))
    points[:, :2] = xy * pixel_size
    return points


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


def marker_data(humans, header, presence_threshold: float = 0.5, credible_level: float | None = 0.5,
                pixel_size: float = 0.001, lifetime: float = 0.5, point_px: float = 6.0, line_px: float = 2.0,
                text_px: float = 14.0, clear: bool = True) -> list[dict]:
    """The markers of the people ``humans (list[Human], image px)`` of the image with ``header``
    as plain data (one dict of Marker fields per marker; ``points (M, 3)`` float64,
    ``colors (M, 4)`` float32 arrays; fields left out keep Marker's defaults).

    pixel_size: metres per pixel; lifetime: seconds a marker stays without being refreshed;
    point_px / line_px / text_px: sphere diameter, line width and text height in pixels.
    """
    shared = {"header": header_data(header), "action": Marker.ADD, "pose": IDENTITY,
              "lifetime": duration_parts(lifetime), "frame_locked": False}

    def marker(ns: str, marker_id: int, kind: int, width_px: float, **fields) -> dict:
        size = width_px * pixel_size
        return dict(shared, ns=ns, id=marker_id, type=kind, scale=(size, size, size), **fields)

    markers = [dict(shared, action=Marker.DELETEALL)] if clear else []
    for i, h in enumerate(order_humans(humans)):
        xyp = np.array([(k.x, k.y, k.presence) for k in h.keypoints], dtype=np.float64).reshape(-1, 3)
        xy, presence = xyp[:, :2], xyp[:, 2]
        present = presence >= presence_threshold
        colors = np.ones((len(xy), 4), dtype=np.float32)  # ColorRGBA holds float32
        if len(xy):
            colors[:, :3] = np.array(presence_colors(presence), dtype=np.float64) / 255.0
        points = _on_plane(xy, pixel_size)
        markers.append(marker("keypoints", i, Marker.SPHERE_LIST, point_px, points=points, colors=colors))

        limbs = _SKELETON[(_SKELETON < len(xy)).all(axis=1)]
        ends = limbs[present[limbs].all(axis=1)].reshape(-1)
        if len(ends):
            markers.append(marker("skeleton", i, Marker.LINE_LIST, line_px, points=points[ends], colors=colors[ends]))

        if credible_level:
            level = float(credible_level)
            polys = [(k, np.asarray(poly, dtype=np.float64).reshape(-1, 2)) for k in np.flatnonzero(present).tolist()
                     for poly in regions_at(h.keypoints[k].regions, level)]
            if polys:
                sizes = [len(poly) for _, poly in polys]
                edges = outline_edges(sizes)
                if len(edges):
                    corners = _on_plane(np.concatenate([poly for _, poly in polys]), pixel_size)
                    owner = np.repeat([k for k, _ in polys], sizes)  # the keypoint of every corner
                    markers.append(marker("regions", i, Marker.LINE_LIST, line_px / 2, points=corners[edges],
                                          colors=colors[owner[edges]]))

        x, y, w, bh = (float(v) for v in h.bbox)
        markers.append(marker("boxes", i, Marker.LINE_STRIP, line_px, color=rgba(BOX_RGB),
                              points=_on_plane([(x, y), (x + w, y), (x + w, y + bh), (x, y + bh), (x, y)], pixel_size)))
        markers.append(marker("ids", i, Marker.TEXT_VIEW_FACING, text_px, color=rgba(TEXT_RGB),
                              text=f"{i} {float(h.box_score):.2f}",
                              pose=(x * pixel_size, (y - text_px) * pixel_size, 0.0, 0.0, 0.0, 0.0, 1.0)))
    return markers


class _Shared(dict):
    """plain value -> one message object made by ``make(value)`` and shared (few distinct ones)."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, key):
        self[key] = value = self.make(key)
        return value


def _pose(p) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in p[:3])
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in p[3:])
    return pose


def markers_to_msg(data: list[dict]) -> MarkerArray:
    """:func:`marker_data` -> ``MarkerArray`` of message objects (shared sub-objects: read-only)."""
    slot = "_" if layout_known(Marker) else ""  # rosidl's slots set directly: no per-field checks
    colours = _Shared(lambda c: ColorRGBA(r=c[0], g=c[1], b=c[2], a=c[3]))
    vectors = _Shared(lambda v: Vector3(x=v[0], y=v[1], z=v[2]))
    poses = _Shared(_pose)
    protos = _Shared(lambda key: Marker(header=plain_header({"stamp": key[0], "frame_id": key[1]}),
                                        lifetime=Duration(sec=key[2][0], nanosec=key[2][1])))
    out = []
    for d in data:
        hdr = d.get("header", {"stamp": (0, 0), "frame_id": ""})
        m = shallow_copy(protos[tuple(hdr["stamp"]), hdr["frame_id"], tuple(d.get("lifetime", (0, 0)))])
        fields = {"ns": str(d.get("ns", "")), "id": int(d.get("id", 0)), "type": int(d.get("type", 0)),
                  "action": int(d.get("action", 0)), "frame_locked": bool(d.get("frame_locked", False)),
                  "text": str(d.get("text", "")), "pose": poses[tuple(map(float, d.get("pose", IDENTITY)))],
                  "scale": vectors[tuple(map(float, d.get("scale", (0.0, 0.0, 0.0))))],
                  "color": colours[tuple(map(float, d.get("color", (0.0,) * 4)))]}
        if "points" in d:
            xyz = np.asarray(d["points"], np.float64).reshape(-1, 3).tolist()
            fields["points"] = [_point(x, y, z) for x, y, z in xyz]
        if "colors" in d:
            rgba_rows = np.asarray(d["colors"], np.float64).reshape(-1, 4).tolist()
            fields["colors"] = [colours[c] for c in map(tuple, rgba_rows)]
        for name, value in fields.items():
            setattr(m, slot + name, value)
        out.append(m)
    return MarkerArray(markers=out)


def humans_to_markers(humans, header, presence_threshold: float = 0.5, credible_level: float | None = 0.5,
                      **options) -> MarkerArray:
    """``MarkerArray`` objects of the people ``humans`` (:func:`marker_data` with the same
    arguments, then :func:`markers_to_msg`)."""
    return markers_to_msg(marker_data(humans, header, presence_threshold, credible_level, **options))
