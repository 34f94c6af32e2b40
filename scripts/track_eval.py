"""How well tracking and line counting hold up on a real clip (issue 12's acceptance figures).

    python scripts/track_eval.py [--video assets/sample.mp4] [--frames 150] [--line 0.5,0,0.5,1] [--every 3]
                                 [--sheet docs/tracking_crossings.jpg]

Runs the detector (default model, the run command's defaults: 300 proposals, the model's own score
threshold) on the first N frames once — its detections are cached under .cache/track_eval/ so that tracker settings
can be compared without detecting again — then the tracker and the counters, and prints:

* per class: distinct track IDs, the most objects detected in one frame, their ratio, and the
  median / mean track length in detected frames;
* the line counts (in / out by class) with the time of every crossing;
* the same with only some frames given to the tracker — what the latest-frame policy does to a live
  source when the detector is slower than it: every k-th frame, and an irregular pattern (the
  newest frame each time a detector taking 0.1–0.8 s per frame is ready; seeded) — once with the
  frames' real timestamps (as the pipeline does) and once pretending the frames were consecutive.
  Against the every-frame run as reference (same detections, so rows match one to one): how many
  IDs each reference track was split into, and how many reference tracks each ID spans (merges
  and swaps). Both are 1.0 for a tracker that agrees with the reference.

``--sheet FILE`` draws, for every crossing of the first line, the crossing track 4 frames before
and at the moment it was counted (red box, the line in white), to check the counts by eye.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.analytics.analytics import Analytics  # noqa: E402
from app.analytics.count import Shape  # noqa: E402
from detector.detections import Detections  # noqa: E402


def detect(video: Path, n: int, proposals: int, threshold: float | None) -> tuple[list[Detections], list[float], tuple[int, int], float]:
    """Detections and timestamps of the first ``n`` frames (cached), the frame size and the rate."""
    import av

    from detector.factory import DEFAULT_MODEL_PATH
    from detector.profiles import weights_sha256

    model = weights_sha256(DEFAULT_MODEL_PATH)  # a new default model must not reuse the old one's detections
    key = hashlib.sha1(f"{video.resolve()}:{video.stat().st_mtime_ns}:{n}:{proposals}:{threshold}:{model}".encode()).hexdigest()[:12]
    cache = ROOT / ".cache" / "track_eval" / f"{video.stem}-{n}-{key}.npz"
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        rate = float(stream.average_rate or 25)
        size = (stream.codec_context.width, stream.codec_context.height)
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        names = tuple(str(s) for s in data["names"])
        frames = [Detections(data[f"b{i}"], data[f"s{i}"], data[f"c{i}"], names) for i in range(len(data["t"]))]
        return frames, [float(t) for t in data["t"]], size, rate

    from detector import Detector, DetectorConfig

    det = Detector(DetectorConfig(proposals=proposals, score_threshold=threshold))
    frames, times = [], []
    start = time.monotonic()
    with av.open(str(video)) as c:
        first = None
        for i, f in enumerate(c.decode(video=0)):
            if i == n:
                break
            t = float(f.pts * f.time_base)
            first = t if first is None else first
            (d,) = det.detect([f.to_ndarray(format="rgb24")])
            frames.append(d)
            times.append(t - first)
    print(f"detected {len(frames)} frames in {time.monotonic() - start:.0f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"t": np.array(times), "names": np.array(frames[0].class_names)}
    for i, d in enumerate(frames):
        arrays.update({f"b{i}": d.boxes, f"s{i}": d.scores, f"c{i}": d.class_ids})
    np.savez_compressed(cache, **arrays)
    return frames, times, size, rate


def track(frames, times, size, rate, lines, indices=None, real_time: bool = True):
    """Run the analytics over ``frames[i] for i in indices`` (all by default), with the frames' own
    timestamps or (``real_time=False``) one nominal frame apart; returns ({i: tracked}, analytics, ms)."""
    analytics = Analytics(track=True, trails=False, lines=lines, frame_rate=rate)
    out, ms = {}, []
    for k, i in enumerate(range(len(frames)) if indices is None else indices):
        t = times[i] if real_time else k / rate
        out[i], _ = analytics.process(frames[i], i, t, size)
        ms.append(analytics.last_ms)
    return out, analytics, ms


def latest_frame_pattern(times: list[float], low_s: float, high_s: float, seed: int = 0) -> list[int]:
    """The frames a detector taking ``low_s``–``high_s`` s per frame (uniform) gets under the
    latest-frame policy: each time it is ready, the newest frame that has arrived."""
    rng = np.random.default_rng(seed)
    t, picked = 0.0, []
    while t <= times[-1]:
        i = int(np.searchsorted(times, t, side="right")) - 1
        if not picked or i > picked[-1]:
            picked.append(i)
        t += rng.uniform(low_s, high_s)
    return picked


def agreement(reference: dict[int, Detections], tracked: dict[int, Detections]) -> tuple[float, float]:
    """(IDs per reference track, reference tracks per ID) over rows that have an ID in both."""
    split, spans = defaultdict(set), defaultdict(set)
    for i, d in tracked.items():
        for a, b in zip(reference[i].track_ids, d.track_ids, strict=True):
            if a >= 0 and b >= 0:
                split[int(a)].add(int(b))
                spans[int(b)].add(int(a))
    return (statistics.fmean(len(v) for v in split.values()) if split else float("nan"),
            statistics.fmean(len(v) for v in spans.values()) if spans else float("nan"))


def summary(tracked: list[Detections]) -> dict[str, dict]:
    """Per class: distinct IDs, most detected at once, ID/most ratio, track lengths (median, mean),
    and the share of detections that carry an ID."""
    lengths: dict[str, Counter] = defaultdict(Counter)
    most: Counter = Counter()
    with_id: Counter = Counter()
    total: Counter = Counter()
    for d in tracked:
        per_frame = Counter(d.labels)
        for name, k in per_frame.items():
            most[name] = max(most[name], k)
            total[name] += k
        for name, tid in zip(d.labels, d.track_ids, strict=True):
            if tid >= 0:
                lengths[name][int(tid)] += 1
                with_id[name] += 1
    out = {}
    for name in sorted(total):
        ls = sorted(lengths[name].values())
        out[name] = {"ids": len(ls), "most_at_once": most[name], "ratio": len(ls) / most[name] if most[name] else None,
                     "median_len": statistics.median(ls) if ls else 0, "mean_len": statistics.fmean(ls) if ls else 0,
                     "lengths": ls, "with_id": with_id[name] / total[name]}
    return out


def print_summary(title: str, stats: dict[str, dict], n_frames: int) -> None:
    print(f"\n{title} ({n_frames} detected frames)")
    for name, s in stats.items():
        print(f"  {name:10s} distinct IDs {s['ids']:3d} · most at once {s['most_at_once']:2d} · ratio {s['ratio']:.2f} · "
              f"track length median {s['median_len']:.0f}, mean {s['mean_len']:.1f} frames · "
              f"{100 * s['with_id']:.0f}% of detections carry an ID")
        print(f"  {'':10s} lengths: {s['lengths']}")


def crossing_sheet(path: Path, video: Path, frames: list[Detections], reference: dict[int, Detections],
                   events, line_x: float, per_row: int = 8) -> None:
    """A contact sheet of 200×200 crops: each crossing's track before (4 frames) and when counted."""
    import av
    import cv2

    from app.pipeline.render import draw_detections

    with av.open(str(video)) as c:
        images = [f.to_ndarray(format="rgb24") for _, f in zip(range(len(frames)), c.decode(video=0), strict=False)]
    tiles = []
    for e in events:
        for j in (max(0, e.frame - 4), e.frame):
            rows = [k for k in range(j, -1, -1) if e.track_id in reference[k].track_ids.tolist()]
            if not rows:
                continue
            d = reference[rows[0]]
            x1, y1, x2, y2 = (int(v) for v in d.boxes[d.track_ids.tolist().index(e.track_id)])
            h, w = images[j].shape[:2]
            x0 = max(0, min(w - 200, (x1 + x2) // 2 - 100))
            y0 = max(0, min(h - 200, (y1 + y2) // 2 - 100))
            crop = draw_detections(images[j], frames[j])[y0:y0 + 200, x0:x0 + 200].copy()
            cv2.line(crop, (int(line_x) - x0, 0), (int(line_x) - x0, 199), (255, 255, 255), 1)
            cv2.rectangle(crop, (x1 - x0, y1 - y0), (x2 - x0, y2 - y0), (255, 0, 0), 2)
            cv2.putText(crop, f"f{j} #{e.track_id} {e.event}", (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
            tiles.append(crop)
    if not tiles:
        return
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % per_row)
    sheet = np.vstack([np.hstack(tiles[k:k + per_row]) for k in range(0, len(tiles), per_row)])
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"  wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(ROOT / "assets" / "sample.mp4"))
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--proposals", type=int, default=300)
    parser.add_argument("--score-threshold", type=float, default=None, help="default: the model's own")
    parser.add_argument("--line", action="append", default=None, help="x1,y1,x2,y2 (default: 0.5,0,0.5,1)")
    parser.add_argument("--every", type=int, default=3, help="the drop test gives the tracker every k-th frame")
    parser.add_argument("--sheet", default=None, help="write the crossings of the first line as a contact sheet (JPEG)")
    args = parser.parse_args()
    lines = [Shape.parse("line", t) for t in (args.line or ["0.5,0,0.5,1"])]

    frames, times, size, rate = detect(Path(args.video), args.frames, args.proposals, args.score_threshold)
    print(f"{args.video}: {len(frames)} frames, {size[0]}×{size[1]}, {rate:g} fps; default model, "
          f"{args.proposals} proposals, score ≥ {args.score_threshold or 'the model’s own'}")

    reference, analytics, ms = track(frames, times, size, rate, lines)
    print_summary("every frame", summary(list(reference.values())), len(reference))
    print(f"  tracker: {statistics.median(ms):.2f} ms per frame median, {np.percentile(ms, 90):.2f} p90")
    for line in analytics.summary_lines()[1:]:
        print("  " + line)
    for c in analytics.lines:
        print(f"  {c.name} crossings: " + ", ".join(f"{e.timestamp_s:.1f}s #{e.track_id} {e.class_name} {e.event}"
                                                   for e in c.events))
    if args.sheet and analytics.lines:
        first = analytics.lines[0]
        if np.isclose(first.points[0][0], first.points[1][0]):  # the sheet marks vertical lines only
            crossing_sheet(Path(args.sheet), Path(args.video), frames, reference, first.events, first.points[0][0])

    patterns = {f"1 frame in {args.every}": list(range(0, len(frames), args.every)),
                "latest frame, detector 0.1–0.8 s per frame": latest_frame_pattern(times, 0.1, 0.8)}
    for name, indices in patterns.items():
        for real_time in (True, False):
            tracked, analytics, _ = track(frames, times, size, rate, lines, indices, real_time)
            how = "real timestamps" if real_time else "timestamps ignored (consecutive steps)"
            print_summary(f"{name}, {how}", summary(list(tracked.values())), len(tracked))
            split, spans = agreement(reference, tracked)
            print(f"  against the every-frame run: {split:.2f} IDs per reference track, {spans:.2f} reference tracks per ID")
            for line in analytics.summary_lines()[1:]:
                print("  " + line)


if __name__ == "__main__":
    main()
