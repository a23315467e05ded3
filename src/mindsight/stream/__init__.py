"""Real-time decoding on a Lab Streaming Layer stream: source, decoder, sinks and views."""
