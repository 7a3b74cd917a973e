#!/usr/bin/env bash
# Makes testsrc-640x360.flv: 6 s of ffmpeg's testsrc2 pattern with a 1 kHz
# tone, H.264 (libx264, Constrained Baseline, no B-frames, GOP 60) at
# 800 kbit/s and AAC at 64 kbit/s, 30 fps: a small real recording for
# `[media] flv = ...` (scenarios/flv-replay.toml) and the tests.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=30" \
  -f lavfi -i "sine=frequency=1000:sample_rate=48000" \
  -t 6 -c:v libx264 -profile:v baseline -preset veryfast -tune zerolatency \
  -pix_fmt yuv420p -g 60 -b:v 800k -maxrate 800k -bufsize 400k \
  -c:a aac -b:a 64k -f flv testsrc-640x360.flv
