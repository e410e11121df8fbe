"""Live streaming channels: stream keys, nginx-rtmp ingest callbacks, HLS playback, viewers."""
