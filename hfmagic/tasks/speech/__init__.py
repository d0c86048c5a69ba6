"""Speech recognition: CTC and Whisper-style models, reading audio, WER."""
