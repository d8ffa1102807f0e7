"""Known content of the synthetic test videos (shared by the video tests)."""

from pipelines.video_interleave.synth import Scene

FPS = 30.0
SIZE = (320, 180)
# scene kinds in order; each scene's first frame is a cut
MAIN_SCENES = [Scene("moving", 40, 1), Scene("pan", 45, 2), Scene("moving", 35, 3), Scene("static", 40, 4),
               Scene("dark", 36, 5), Scene("letterbox", 40, 6)]
MP4V_SCENES = [Scene("moving", 40, 7), Scene("pillarbox", 40, 8), Scene("pan", 40, 9)]
