"""spikebridge."""
