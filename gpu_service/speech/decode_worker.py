"""The decoder subprocess: audio file bytes on stdin -> 16 kHz mono signed 16-bit PCM on stdout.

Run as `python -m gpu_service.speech.decode_worker MAX_SECONDS`. It imports only PyAV, so it starts
in a fraction of a second; the service kills it when its time is up (a thread cannot be stopped,
a process can). Exit status 3: not decodable audio (the reason on stderr); 4: longer than MAX_SECONDS.
"""

from __future__ import annotations

import io
import sys

RATE = 16_000
NOT_AUDIO = 3
TOO_LONG = 4


def main() -> int:
    import av

    max_seconds = float(sys.argv[1])
    data = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    samples = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                sys.stderr.write("the file has no audio stream")
                return NOT_AUDIO
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(stream):
                for chunk in resampler.resample(frame):
                    pcm = chunk.to_ndarray().tobytes()
                    samples += len(pcm) // 2
                    if samples > max_seconds * RATE:
                        sys.stderr.write(f"{max_seconds:g}")
                        return TOO_LONG
                    out.write(pcm)
            for chunk in resampler.resample(None):
                out.write(chunk.to_ndarray().tobytes())
    except (av.FFmpegError, ValueError, IndexError, EOFError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
        sys.stderr.write(str(reason).splitlines()[0])
        return NOT_AUDIO
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
